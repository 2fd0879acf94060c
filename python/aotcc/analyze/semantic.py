"""Semantic first appearance: a term can be needed before its literal first mention
("money back" two chunks before "Refund Policy"); then its definition block belongs in
that earlier chunk.

Cost stays linear in the corpus: one embedding per unit (only units before some term's
literal first chunk) and one per term; similarity shortlists, for each term, up to
`top_k` units in chunks before its literal first chunk; each shortlisted (unit, term)
pair is confirmed by one constrained yes/no from the model. The anchor is the start of
the earliest confirmed unit. All three kinds of result are cached by their text.

A small model's pooled embeddings all point much the same way (cosines of 0.8 between
unrelated sentences), so similarities are taken after subtracting the mean vector of the
document's units, and a pair is shortlisted only when that centred cosine reaches
`SIM_MIN`. Gemma 270M's yes/no barely separates paraphrases from unrelated sentences
(margins within ±0.5 nats either way), so in practice the similarity gate carries the
precision and the yes/no vetoes only a clear "no".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aotcc.analyze.cache import Cache, key_of
from aotcc.analyze.engine import Engine
from aotcc.units import CODE, Unit

VERSION = "semantic-v2"
#: confirmed when log p(yes) - log p(no) reaches this
MARGIN = 0.0
#: centred cosine a unit needs to be shortlisted for a term
SIM_MIN = 0.26
#: units shorter than this (characters of text) carry too little meaning to embed
MIN_UNIT_CHARS = 24

_QUESTION = (
    "Sentence: \"{sentence}\"\n\n"
    "Is this sentence about the following? {name}: {definition}\n"
    "Answer yes or no."
)


@dataclass(frozen=True)
class Candidate:
    term: str
    unit: int
    similarity: float
    margin: float
    #: centred cosine of the term with the unit holding its literal first mention: the
    #: yardstick a reviewer compares `similarity` with (reported, not a gate: on the
    #: example prompt it ranged from -0.12 to 0.71 and separated nothing)
    literal: float = float("nan")

    @property
    def confirmed(self) -> bool:
        return self.margin >= MARGIN


@dataclass
class Anchors:
    """The anchors found and the evidence behind them."""

    anchors: dict[str, int]  # term name → character offset where it is first needed
    candidates: list[Candidate]
    embedded_units: int


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def term_text(name: str, definition: str) -> str:
    return f"{name}: {definition}"


def unit_vector(engine: Engine, cache: Cache, text: str) -> np.ndarray:
    key = key_of("embedding", version=VERSION, settings=engine.settings, text=text)
    return np.asarray(cache.through("embedding", key, lambda: engine.embed(text).tolist()), dtype=np.float32)


def unit_vectors(engine: Engine, cache: Cache, texts: list[str]) -> list[np.ndarray]:
    """`unit_vector` of each text; the cache misses are embedded together, in batches."""
    keys = [key_of("embedding", version=VERSION, settings=engine.settings, text=t) for t in texts]
    got: list[Any] = [cache.get("embedding", k) for k in keys]
    missing = [i for i, g in enumerate(got) if g is None]
    for i, v in zip(missing, engine.embed_many([texts[i] for i in missing])):
        got[i] = v.tolist()
        cache.put(keys[i], got[i])
    return [np.asarray(g, dtype=np.float32) for g in got]


def confirm(engine: Engine, cache: Cache, name: str, definition: str, sentence: str) -> float:
    prompt = engine.chat(_QUESTION.format(name=name, definition=_clip(definition, 400), sentence=_clip(sentence, 600)))
    key = key_of("confirmation", version=VERSION, settings=engine.settings, prompt=prompt)
    return float(cache.through("confirmation", key, lambda: engine.yes_no(prompt)))


def analyse(engine: Engine, cache: Cache, text: str, units: list[Unit], unit_chunk: list[int],
            terms: list[tuple[str, str, int | None, int | None]], *, top_k: int = 3,
            progress: Callable[[str, int, int], None] | None = None) -> Anchors:
    """`terms` are `(name, definition, literal first chunk or None, character offset of
    the literal first mention or None)`; `unit_chunk[i]` is the chunk of unit i in the
    compile without anchors."""
    movable = [(n, d, c) for n, d, c, _ in terms if c is not None and c > 0]
    first_at = {n: a for n, _, c, a in terms if c is not None and c > 0}
    if not movable:
        return Anchors({}, [], 0)
    horizon = max(c for _, _, c in movable)
    cand_units = [i for i, u in enumerate(units)
                  if unit_chunk[i] < horizon and u.kind != CODE and len(text[u.start:u.end].strip()) >= MIN_UNIT_CHARS]
    vecs = np.zeros((len(cand_units), 0), dtype=np.float32)
    rows: list[np.ndarray] = []
    total = len(cand_units) + len(movable)
    step = 64  # texts per batch of embeddings, so the progress bar moves
    for k in range(0, len(cand_units), step):
        part = cand_units[k : k + step]
        rows.extend(unit_vectors(engine, cache, [text[units[i].start:units[i].end].strip() for i in part]))
        if progress is not None:
            progress("embed", k + len(part), total)
    mu = None
    if rows:
        vecs = np.stack(rows)
        if len(rows) >= 3:
            mu = vecs.mean(axis=0)
            vecs = _unit(vecs - mu)
    chunk_of = np.asarray([unit_chunk[i] for i in cand_units], dtype=np.int64)
    shortlist: list[tuple[str, str, int, float, float]] = []
    for k, (name, definition, first) in enumerate(movable):
        tv = unit_vector(engine, cache, term_text(name, definition))
        if mu is not None:
            tv = _unit(tv - mu)
        if progress is not None:
            progress("embed", len(cand_units) + k + 1, total)
        if not len(cand_units):
            continue
        ok = np.flatnonzero(chunk_of < first)
        if not ok.size:
            continue
        sims = vecs[ok] @ tv
        order = ok[np.argsort(-sims, kind="stable")[:top_k]]
        best = [int(j) for j in order if float(vecs[j] @ tv) >= (SIM_MIN if mu is not None else 0.9)]
        literal = float("nan")
        at = first_at.get(name)
        if best and at is not None and mu is not None:
            lu = next((u for u in units if u.start <= at < u.end), None)
            if lu is not None:
                lv = _unit(unit_vector(engine, cache, text[lu.start:lu.end].strip()) - mu)
                literal = float(lv @ tv)
        for j in best:
            shortlist.append((name, definition, cand_units[int(j)], float(vecs[j] @ tv), literal))
    candidates = []
    anchors: dict[str, int] = {}
    for k, (name, definition, i, sim, literal) in enumerate(shortlist):
        u = units[i]
        margin = confirm(engine, cache, name, definition, text[u.start:u.end])
        c = Candidate(name, i, sim, margin, literal)
        candidates.append(c)
        if c.confirmed and (name not in anchors or u.start < anchors[name]):
            anchors[name] = u.start
        if progress is not None:
            progress("confirm", k + 1, len(shortlist))
    return Anchors(anchors, candidates, len(cand_units))
