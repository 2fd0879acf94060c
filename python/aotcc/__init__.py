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

if TYPE_CHECKING:  # the llama.cpp side (aotcc.llama) is imported lazily
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.runtime import Runtime
    from aotcc.llama.session import Session

_LAZY = {"Runtime": "aotcc.llama.runtime", "Session": "aotcc.llama.session", "Bundle": "aotcc.llama.bundle"}
_SUBPACKAGES = ("export", "llama", "analyze", "evaluate")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBPACKAGES:  # loaded on first use: `aotcc.export.export_request(...)`
        return importlib.import_module(f"aotcc.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aotcc' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AotccError", "Bundle", "Compiled", "FORMAT_VERSION", "Runtime", "SPAN_KINDS", "Session",
    "Table", "TermInfo", "__version__", "compile", "compile_with", "errors", "load",
]
