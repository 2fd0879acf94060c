"""LLM-assisted analysis (`aotcc analyze`): the target model decides where chunks end
and where each term is first needed, and drafts a term spec for a prompt that has none.

    from aotcc.analyze import Engine, analyze
    with Engine() as engine:                       # default model: Gemma 3 270M
        a = analyze("prompt.md", "terms.toml", engine=engine, cache_dir="~/.cache/aotcc/analyze")
    a.compiled.save("prompt.aotc")                 # compiled with a.breaks and a.anchors
    print(a.calls.total, a.cache.to_dict())

The pieces: `boundaries` (surprisal → breaks), `semantic` (embeddings + yes/no →
anchors), `draft` (extractor + grammar-constrained JSON → a TOML spec), `cache` (every
model result by content hash), `engine` (the model calls, counted). The compile itself
is the core's, given `breaks` and `anchors` (`aotcc.compile(..., breaks=, anchors=)`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aotcc._io import decode_utf8
from aotcc.analyze import boundaries as _boundaries
from aotcc.analyze import semantic as _semantic
from aotcc.analyze.cache import Cache, Stats, default_dir
from aotcc.analyze.engine import Calls, Engine
from aotcc.api import Source, _sources, compile_with
from aotcc.compiled import Compiled
from aotcc.errors import ModelError
from aotcc.options import CompileOptions
from aotcc.spec import TermSpec, load_spec
from aotcc.units import HEADING, Unit, segment

#: a progress callback: (stage label, done, total)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Boundary:
    """One chunk boundary of the analysed compile and who chose it."""

    offset: int  # character offset of the chunk start in the joined source
    chunk: int  # the chunk that starts here
    reason: str  # "model" (a topic shift), "heading" or "budget" (structure)
    score: float | None  # the topic-shift score of the unit starting here (nats), if any


@dataclass(frozen=True)
class Move:
    """A term whose definition moved before its literal first mention."""

    term: str
    literal_chunk: int
    chunk: int
    offset: int
    sentence: str
    similarity: float
    margin: float | None  # the yes/no margin, None when not asked


@dataclass
class Analysis:
    compiled: Compiled
    breaks: list[int]
    anchors: dict[str, int]
    boundaries: list[Boundary]
    moves: list[Move]
    calls: Calls
    cache: Stats
    units: int
    windows: int
    candidates: list[_semantic.Candidate] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        m = self.compiled.manifest
        return {
            "chunks": m["chunks"], "units": self.units, "windows": self.windows,
            "breaks": self.breaks, "anchors": self.anchors,
            "boundaries": [b.__dict__ for b in self.boundaries],
            "moved": [mv.__dict__ for mv in self.moves],
            "candidates": [{"term": c.term, "unit": c.unit, "similarity": round(c.similarity, 4),
                            "margin": None if c.margin is None else round(c.margin, 4),
                            "literal_similarity": None if c.literal != c.literal else round(c.literal, 4),
                            "confirmed": c.confirmed} for c in self.candidates],
            "model_calls": self.calls.to_dict(), "cache": self.cache.to_dict(), "seconds": round(self.seconds, 3),
        }


def _spec_terms(terms: TermSpec) -> list[dict[str, Any]]:
    spec_json, _ = load_spec(terms)
    doc = json.loads(spec_json)
    items = doc.get("terms", doc.get("term", [])) if isinstance(doc, dict) else doc
    return [t for t in items or [] if isinstance(t, dict)]


def analyze(
    source: Source,
    terms: TermSpec,
    *,
    engine: Engine | None = None,
    model: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = "default",
    options: CompileOptions | None = None,
    boundaries: bool = True,
    semantic: bool = True,
    top_k: int = 3,
    threshold: float = 1.0,
    confirm: bool = False,
    progress: ProgressFn | None = None,
    scatter: _boundaries.Scatter | None = None,
    **compile_options: Any,
) -> Analysis:
    """Analyse `source` with the model and compile it with the breaks and anchors found.

    `cache_dir` is where model results are kept ("default": `default_dir()`, None: no
    cache). Pass an open `engine` to reuse a loaded model across calls. The compile
    options come as `options=CompileOptions(...)` or as its keywords (`budget=256`).
    `scatter` computes the surprisal windows elsewhere (`aotcc analyze --ray`); the
    result is the same. `confirm` asks the model a yes/no about each shortlisted sentence
    before a definition moves (off by default: Gemma 3 270M said yes to every one it was
    asked, and it is costly; docs/analyze.md).
    """
    opts = options if options is not None else CompileOptions(**compile_options)
    budget = opts.budget
    t0 = time.perf_counter()
    # the sources and the spec are checked before the model is loaded: bad input fails fast
    srcs = _sources(source)
    texts = [decode_utf8(data, name) for name, data in srcs]
    compiler = opts.compiler(terms)
    own = engine is None
    eng = engine if engine is not None else Engine(model)
    cache = Cache(default_dir() if cache_dir == "default" else cache_dir)
    calls_before = Calls(**{k: v for k, v in eng.calls.__dict__.items() if k != "seconds"})
    try:
        text = "".join(texts)
        file_starts = tuple(int(x) for x in np.cumsum([0] + [len(t) for t in texts])[:-1])
        units = segment(text, file_starts)

        bnd = None
        breaks: list[int] = []
        if boundaries and units:
            bnd = _boundaries.analyse(
                eng, cache, text, units, budget, threshold=threshold,
                progress=(lambda d, t: progress("surprisal", d, t)) if progress else None, scatter=scatter,
            )
            breaks = bnd.breaks
        plain = compile_with(compiler, srcs, tokenizer=opts.tokenizer, progress=False, breaks=breaks)

        anchors: dict[str, int] = {}
        found = _semantic.Anchors({}, [], 0)
        if semantic and units:
            starts = plain.chunks.src_start
            unit_chunk = [int(np.searchsorted(starts, u.start, side="right")) - 1 for u in units]
            occ = plain.occurrences
            first_chunk: dict[int, int] = {}
            first_at: dict[int, int] = {}
            for t, c, r, at in zip(occ.term.tolist(), occ.chunk.tolist(), occ.role.tolist(), occ.start.tolist()):
                if r == 0:
                    first_chunk.setdefault(int(t), int(c))
                    first_at.setdefault(int(t), int(at))
            spec_terms = _spec_terms(terms)
            rows = [(str(t.get("name")), str(t.get("definition")), first_chunk.get(i), first_at.get(i))
                    for i, t in enumerate(spec_terms)]
            found = _semantic.analyse(
                eng, cache, text, units, unit_chunk, rows, top_k=top_k, confirm=confirm,
                progress=(lambda s, d, t: progress(s, d, t)) if progress else None,
            )
            anchors = found.anchors
        compiled = compile_with(compiler, srcs, tokenizer=opts.tokenizer, progress=False, breaks=breaks, anchors=anchors) \
            if anchors else plain

        out_boundaries = _explain(compiled, units, breaks, bnd)
        moves = _moves(compiled, plain, text, units, found)
        calls = Calls(**{k: getattr(eng.calls, k) - getattr(calls_before, k)
                         for k in calls_before.__dict__ if k != "seconds"})
        calls.seconds = dict(eng.calls.seconds)
        return Analysis(compiled, breaks, anchors, out_boundaries, moves, calls, cache.stats, len(units),
                        bnd.windows if bnd else 0, found.candidates, time.perf_counter() - t0)
    finally:
        if own:
            eng.close()


def _explain(compiled: Compiled, units: list[Unit], breaks: list[int], bnd: Any) -> list[Boundary]:
    """Who chose each chunk boundary: a model break since the previous boundary, a
    heading, or the budget."""
    starts = compiled.chunks.src_start.tolist()
    unit_at = {u.start: i for i, u in enumerate(units)}
    out = []
    prev = 0
    for c, b in enumerate(starts[1:], start=1):
        i = unit_at.get(int(b))
        model = any(prev < x <= b for x in breaks)
        if i is not None and units[i].kind == HEADING:
            reason = "heading"
        elif model:
            reason = "model"
        else:
            reason = "budget"
        score = float(bnd.score[i]) if bnd is not None and i is not None else None
        out.append(Boundary(int(b), c, reason, None if score is None else round(score, 4)))
        prev = int(b)
    return out


def _moves(compiled: Compiled, plain: Compiled, text: str, units: list[Unit], found: _semantic.Anchors) -> list[Move]:
    before = {t.name: t.first_chunk for t in plain.terms}
    best: dict[str, _semantic.Candidate] = {}
    for cand in found.candidates:
        if cand.confirmed and found.anchors.get(cand.term) == units[cand.unit].start:
            best[cand.term] = cand
    out = []
    for t in compiled.terms:
        c = best.get(t.name)
        was = before.get(t.name)
        if c is None or t.first_chunk is None or was is None or t.first_chunk >= was:
            continue
        u = units[c.unit]
        out.append(Move(t.name, int(was), int(t.first_chunk), u.start,
                        " ".join(text[u.start:u.end].split()), round(c.similarity, 4),
                        None if c.margin is None else round(c.margin, 4)))
    return out


__all__ = ["Analysis", "Boundary", "Cache", "Engine", "ModelError", "Move", "analyze", "default_dir", "Path"]
