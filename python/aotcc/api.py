"""The Python API: `compile(source, terms, **options) -> Compiled`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

from aotcc import _core
from aotcc._io import read_input
from aotcc.compiled import Compiled
from aotcc.counting import TokenCounter, resolve_tokenizer
from aotcc.errors import InputError
from aotcc.options import CompileOptions
from aotcc.progress import Poller, enabled
from aotcc.spec import TermSpec

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
    tag_ids: str = "alpha",
    tag_style: str = "short",
    options: CompileOptions | None = None,
    progress: bool | None = None,
    breaks: Sequence[int] | None = None,
    anchors: Mapping[str, int] | None = None,
) -> Compiled:
    """Compiles a master prompt with a term spec.

    `source` is the prompt text (`str`), its bytes, a `Path`, or a list of paths or
    `(name, bytes)` pairs concatenated in order. `terms` is a spec file path (TOML or
    JSON) or the spec as a dict/list. The options (see `aotcc.options.CompileOptions`)
    come as keywords, or all at once as `options=` (which then wins). `tokenizer` is a
    `.gguf` model, a `tokenizer.json` path, a counter object, or None for the built-in
    estimator. `progress` draws a bar on stderr (default: when stderr is a terminal).

    `breaks` and `anchors` are analysis hints (see `aotcc analyze`), in characters of
    the joined source: a chunk ends at the first unit boundary at or after each break
    (within the budget), and a term's definition goes into the chunk holding its anchor
    when that comes before the term's first literal mention. `tag_ids="cheap"` picks,
    among collision-free labels, those whose reference tag costs the fewest tokens in
    `tokenizer`.
    """
    opts = options if options is not None else CompileOptions(
        budget=budget, placement=placement, references=references, tag_ids=tag_ids, tag_style=tag_style,
        tokenizer=tokenizer)
    return compile_with(opts.compiler(terms), _sources(source), tokenizer=opts.tokenizer, progress=progress,
                        breaks=breaks, anchors=anchors)


def compile_with(
    compiler: _core.Compiler,
    sources: list[tuple[str, bytes]],
    *,
    tokenizer: str | os.PathLike[str] | TokenCounter | None = None,
    progress: bool | None = None,
    breaks: Sequence[int] | None = None,
    anchors: Mapping[str, int] | None = None,
) -> Compiled:
    """Compiles with a prepared `_core.Compiler` (reused across runs by `aotcc bench`)."""
    counter, fingerprint = resolve_tokenizer(tokenizer)
    hints = _byte_hints(sources, breaks, anchors)
    show = enabled() if progress is None else progress
    if not show:
        return Compiled(compiler.compile(sources, counter=counter, tokenizer=fingerprint, **hints))
    p = _core.Progress()

    def read() -> tuple[float, float, str, str]:
        stage = p.stage
        return p.done, p.total, stage, _UNITS.get(stage, "")

    with Poller(read):
        artifact = compiler.compile(sources, counter=counter, tokenizer=fingerprint, progress=p, **hints)
    return Compiled(artifact)


def _byte_hints(
    sources: list[tuple[str, bytes]], breaks: Sequence[int] | None, anchors: Mapping[str, int] | None
) -> dict[str, Any]:
    """Character offsets of the joined source -> the byte offsets the core takes."""
    if not breaks and not anchors:
        return {}
    wanted = sorted({int(b) for b in breaks or ()} | {int(a) for a in (anchors or {}).values()})
    if wanted and wanted[0] < 0:
        raise InputError(f"hint offset {wanted[0]} is negative")
    to_byte: dict[int, int] = {}
    chars = nbytes = 0
    pending = iter(wanted)
    nxt = next(pending, None)
    for _name, data in sources:
        text = data.decode("utf-8", errors="replace")
        while nxt is not None and nxt <= chars + len(text):
            to_byte[nxt] = nbytes + len(text[: nxt - chars].encode("utf-8"))
            nxt = next(pending, None)
        chars += len(text)
        nbytes += len(data)
    if nxt is not None:
        raise InputError(f"hint offset {nxt} is past the end of the {chars}-character source")
    out: dict[str, Any] = {}
    if breaks:
        out["breaks"] = [to_byte[int(b)] for b in breaks]
    if anchors:
        out["anchors"] = [(str(name), to_byte[int(at)]) for name, at in anchors.items()]
    return out


__all__ = ["CompileOptions", "compile", "compile_with"]
