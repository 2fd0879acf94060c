"""aotcc — an ahead-of-time context compiler for LLM prompts.

    import aotcc
    compiled = aotcc.compile(Path("prompt.md"), "terms.toml", budget=512)
    compiled.save("prompt.aotc")
    again = aotcc.load("prompt.aotc")

Each glossary term's definition is injected inline, in XML, into the chunk where the
term first appears; later mentions become abstract reference tags that point back to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aotcc import errors
from aotcc._core import FORMAT_VERSION, __version__
from aotcc.api import compile, compile_with
from aotcc.compiled import SPAN_KINDS, Compiled, Table, TermInfo, load
from aotcc.errors import AotccError

if TYPE_CHECKING:  # the llama.cpp side is imported lazily
    from aotcc.bundle import Bundle
    from aotcc.runtime import Runtime, Session

_LAZY = {"Runtime": "aotcc.runtime", "Session": "aotcc.runtime", "Bundle": "aotcc.bundle"}


def __getattr__(name: str) -> Any:
    if name == "export":  # the provider-export module (`aotcc.export.export_request`), loaded on first use
        import importlib

        return importlib.import_module("aotcc.export")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aotcc' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AotccError", "Bundle", "Compiled", "FORMAT_VERSION", "Runtime", "SPAN_KINDS", "Session",
    "Table", "TermInfo", "__version__", "compile", "compile_with", "errors", "load",
]
