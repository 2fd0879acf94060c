"""The Python API: `compile(source, terms, **options) -> Compiled`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

from aotcc import _core
from aotcc._io import read_input
from aotcc.compiled import Compiled
from aotcc.counting import TokenCounter, resolve_tokenizer
from aotcc.progress import Poller, enabled
from aotcc.spec import TermSpec, load_spec

Source = Union[str, bytes, "os.PathLike[str]", Sequence[Union["os.PathLike[str]", tuple[str, bytes]]]]

_UNITS = {"read": "B", "segment": "B", "count": "units", "detect": "B", "chunk": "units",
          "plan": "occurrences", "rewrite": "B", "emit": ""}


def _sources(source: Source) -> list[tuple[str, bytes]]:
    if isinstance(source, str):
        return [("<string>", source.encode("utf-8"))]
    if isinstance(source, (bytes, bytearray, memoryview)):
        return [("<bytes>", bytes(source))]
    if isinstance(source, os.PathLike):
        return [(str(source), read_input(source))]
    out = []
    for item in source:
        if isinstance(item, tuple):
            name, data = item
            out.append((str(name), data if isinstance(data, bytes) else str(data).encode("utf-8")))
        else:
            out.append((str(item), read_input(item)))
    return out


def compile(
    source: Source,
    terms: TermSpec,
    *,
    budget: int = 512,
    placement: str = "chunk",
    references: str = "tag",
    tokenizer: str | os.PathLike[str] | TokenCounter | None = None,
    progress: bool | None = None,
) -> Compiled:
    """Compiles a master prompt with a term spec.

    `source` is the prompt text (`str`), its bytes, a `Path`, or a list of paths or
    `(name, bytes)` pairs concatenated in order. `terms` is a spec file path (TOML or
    JSON) or the spec as a dict/list. `tokenizer` is a `tokenizer.json` path, a counter
    object, or None for the built-in estimator. `progress` draws a bar on stderr
    (default: when stderr is a terminal).
    """
    spec_json, spec_name = load_spec(terms)
    compiler = _core.Compiler(spec_json, spec_name, budget=budget, placement=placement, references=references)
    return compile_with(compiler, _sources(source), tokenizer=tokenizer, progress=progress)


def compile_with(
    compiler: _core.Compiler,
    sources: list[tuple[str, bytes]],
    *,
    tokenizer: str | os.PathLike[str] | TokenCounter | None = None,
    progress: bool | None = None,
) -> Compiled:
    """Compiles with a prepared `_core.Compiler` (reused across runs by `aotcc bench`)."""
    counter, fingerprint = resolve_tokenizer(tokenizer)
    show = enabled() if progress is None else progress
    if not show:
        return Compiled(compiler.compile(sources, counter=counter, tokenizer=fingerprint))
    p = _core.Progress()

    def read() -> tuple[float, float, str, str]:
        stage = p.stage
        return p.done, p.total, stage, _UNITS.get(stage, "")

    with Poller(read):
        artifact = compiler.compile(sources, counter=counter, tokenizer=fingerprint, progress=p)
    return Compiled(artifact)


__all__ = ["compile", "compile_with", "Path"]
