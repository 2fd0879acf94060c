"""The llama.cpp side of aotcc: KV bundles, the runtime that prefills and loads them,
sessions that answer from a loaded root, and chat templates.

    from aotcc.llama import Runtime
    rt = Runtime()                      # default model: Gemma 3 270M (Q4_K_M)
    rt.prefill("prompt.aotc", "prompt.aotkv")
    print(rt.load("prompt.aotkv").ask("What is RP-7?").text)

Importing this package does not load llama.cpp: `backend` (the only module that calls
`llama_cpp`) is imported on first use. `bundle` (the `.aotkv` format) never needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.runtime import PrefillResult, Runtime, default_model
    from aotcc.llama.session import Answer, Score, Session

_LAZY = {
    "Bundle": "aotcc.llama.bundle",
    "Runtime": "aotcc.llama.runtime",
    "PrefillResult": "aotcc.llama.runtime",
    "default_model": "aotcc.llama.runtime",
    "Answer": "aotcc.llama.session",
    "Score": "aotcc.llama.session",
    "Session": "aotcc.llama.session",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aotcc.llama' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Answer", "Bundle", "PrefillResult", "Runtime", "Score", "Session", "default_model"]
