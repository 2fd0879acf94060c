"""Semantic first appearance: a term can be needed before its literal first mention
("money back" two chunks before "Refund Policy"); then its definition block belongs in
that earlier chunk.

Cost stays linear in the corpus: one embedding per unit (only units before some term's
literal first chunk) and one per term, then, for each term, up to `top_k` shortlisted
units in chunks before its literal first chunk. The anchor is the start of the earliest
shortlisted unit. With `confirm=True` the shortlisted units are asked about in source
order, one constrained yes/no each, until one is confirmed: the anchor is then the
earliest confirmed unit, so the later ones need no question. Embeddings and
confirmations are cached by their text.

An embedding is the mean hidden state of the text's tokens at a layer a little under
half way through the model, from a decode that stops there (`Engine.embed_many`): no
output layer, and texts packed side by side. The yes/no prompt puts the term and its
definition first, so all the questions about one term branch from one decoded prefix
(`Engine.branches`), with logits only on each question's last row.

A small model's pooled hidden states all point much the same way, so similarities are
taken after subtracting the mean vector of the document's units, and a pair is
shortlisted only when that centred cosine reaches `SIM_MIN`. Gemma 270M's yes/no barely
separates paraphrases from unrelated sentences (margins within ±0.5 nats either way), so
in practice the similarity gate carries the precision and the yes/no vetoes only a
clear "no". It vetoed none of the 27 shortlisted sentences of the example prompt and the
tests while costing about one prefill of a 1k-token prompt, so it is off by default
(`confirm=False`, `aotcc analyze --confirm` turns it on, for a model that can answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aotcc.analyze.cache import Cache, key_of
from aotcc.analyze.engine import Engine
from aotcc.units import CODE, HEADING, Unit

VERSION = "semantic-v3"  # (the embeddings it caches; the gate is not cached)
#: confirmed when log p(yes) - log p(no) reaches this
MARGIN = 0.0
#: centred cosine a unit needs to be shortlisted for a term
SIM_MIN = 0.26
#: units shorter than this (characters of text) carry too little meaning to embed
MIN_UNIT_CHARS = 24

#: the question, cut where the parts shared by every candidate of a term end: the term
#: and its definition come first, so a term's questions share that prefix
_TERM_INTRO = "Term: "
_TERM_AFTER = "\n\nSentence: \""
_QUESTION_END = "\"\n\nIs this sentence about the term above? Answer yes or no."


@dataclass(frozen=True)
class Candidate:
    term: str
    unit: int
    similarity: float
    #: log p(yes) - log p(no) of the yes/no check; None when it was not asked
    margin: float | None
    #: centred cosine of the term with the unit holding its literal first mention: the
    #: yardstick a reviewer compares `similarity` with (reported, not a gate: on the
    #: example prompt it ranged from -0.12 to 0.71 and separated nothing)
    literal: float = float("nan")

    @property
    def confirmed(self) -> bool:
        """Shortlisted and, when asked, answered yes."""
        return self.margin is None or self.margin >= MARGIN


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


class _Term:
    """One term's yes/no prompt: the shared prefix (the chat turn up to the sentence) and
    the question about each sentence (a suffix branching from the prefix)."""

    def __init__(self, engine: Engine, name: str, definition: str) -> None:
        pre, post = engine.chat_parts()
        self.engine = engine
        self.post = post
        self.prefix, _ = engine.prompt_parts((pre, True), (_TERM_INTRO + term_text(name, _clip(definition, 400))
                                                           + _TERM_AFTER, False))

    def suffix(self, sentence: str) -> list[int]:
        toks, _ = self.engine.prompt_parts((_clip(sentence, 600) + _QUESTION_END, False), (self.post, True))
        return toks


def unit_vectors(engine: Engine, cache: Cache, texts: list[str]) -> list[np.ndarray]:
    """The embedding of each text; the cache misses are embedded together."""
    keys = [key_of("embedding", version=VERSION, settings=engine.settings, text=t) for t in texts]
    got: list[Any] = [cache.get("embedding", k) for k in keys]
    missing = [i for i, g in enumerate(got) if g is None]
    for i, v in zip(missing, engine.embed_many([texts[i] for i in missing])):
        got[i] = v.tolist()
        cache.put(keys[i], got[i])
    return [np.asarray(g, dtype=np.float32) for g in got]


def confirm_many(engine: Engine, cache: Cache, asks: list[tuple[str, str, list[str]]]) -> list[list[float]]:
    """Per `(name, definition, sentences)`: the yes/no margin of each sentence, the
    questions about one term branching from its decoded prefix."""
    yes, no = engine.answer_ids()
    out: list[list[Any]] = []
    jobs: list[tuple[list[int], list[list[int]]]] = []
    where: list[tuple[int, list[int], list[str]]] = []
    for name, definition, sentences in asks:
        t = _Term(engine, name, definition)
        sufs = [t.suffix(x) for x in sentences]
        keys = [key_of("confirmation", version=VERSION, settings=engine.settings, prefix=t.prefix, suffix=x)
                for x in sufs]
        margins: list[Any] = [cache.get("confirmation", k) for k in keys]
        todo = [i for i, m in enumerate(margins) if m is None]
        out.append(margins)
        if todo:
            jobs.append((t.prefix, [sufs[i] for i in todo]))
            where.append((len(out) - 1, todo, [keys[i] for i in todo]))
    for (k, todo, keys), lps in zip(where, engine.branches(jobs, yes + no) if jobs else []):
        for i, key, lp in zip(todo, keys, lps):
            out[k][i] = engine.margin(lp, len(yes))
            cache.put(key, out[k][i])
    return [[float(m) for m in ms] for ms in out]


def analyse(engine: Engine, cache: Cache, text: str, units: list[Unit], unit_chunk: list[int],
            terms: list[tuple[str, str, int | None, int | None]], *, top_k: int = 3, confirm: bool = False,
            progress: Callable[[str, int, int], None] | None = None) -> Anchors:
    """`terms` are `(name, definition, literal first chunk or None, character offset of
    the literal first mention or None)`; `unit_chunk[i]` is the chunk of unit i in the
    compile without anchors. With `confirm`, each shortlisted unit is asked a yes/no
    before it becomes an anchor."""
    movable = [(n, d, c) for n, d, c, _ in terms if c is not None and c > 0]
    first_at = {n: a for n, _, c, a in terms if c is not None and c > 0 and a is not None}
    if not movable:
        return Anchors({}, [], 0)
    horizon = max(c for _, _, c in movable)
    cand_units = [i for i, u in enumerate(units)
                  if unit_chunk[i] < horizon and u.kind not in (CODE, HEADING)
                  and len(text[u.start:u.end].strip()) >= MIN_UNIT_CHARS]
    literal_units = {n: next((i for i, u in enumerate(units) if u.start <= a < u.end), None) for n, a in first_at.items()}
    extra = sorted({i for i in literal_units.values() if i is not None} - set(cand_units))
    texts = [text[units[i].start:units[i].end].strip() for i in cand_units + extra]
    # every term the text names competes for each sentence (see `own` below), the
    # movable ones first
    others = [(n, d) for n, d, c, _ in terms if c == 0]
    texts += [term_text(n, d) for n, d, _ in movable] + [term_text(n, d) for n, d in others]
    vec_list: list[np.ndarray] = []
    step = 64  # texts per call (packed into decodes), so the progress bar moves
    for k in range(0, len(texts), step):
        vec_list += unit_vectors(engine, cache, texts[k : k + step])
        if progress is not None:
            progress("embed", min(k + step, len(texts)), len(texts))
    allv = np.stack(vec_list)
    nu = len(cand_units)
    vecs = allv[:nu]
    by_unit = {i: allv[k] for k, i in enumerate(cand_units + extra)}
    mu = vecs.mean(axis=0) if nu >= 3 else None
    vecs = _unit(vecs - mu) if mu is not None else _unit(vecs)
    chunk_of = np.asarray([unit_chunk[i] for i in cand_units], dtype=np.int64)
    tvs = allv[nu + len(extra):]
    tvs = _unit(tvs - mu) if mu is not None else _unit(tvs)
    # a sentence is evidence only for the term it is closest to: generic opening lines
    # sit close to every term, and as the earliest shortlisted sentence they anchored
    # 26 of the example prompt's 29 terms, several to one paragraph (9 now)
    own = np.argmax(vecs @ tvs.T, axis=1) if len(tvs) > 1 else np.zeros(nu, dtype=np.int64)
    shortlist: list[tuple[str, str, list[tuple[int, float]], float]] = []
    for k, (name, definition, first) in enumerate(movable):
        tv = tvs[k]
        ok = np.flatnonzero((chunk_of < first) & (own == k))
        best: list[tuple[int, float]] = []
        if ok.size:
            sims = vecs[ok] @ tv
            for j in ok[np.argsort(-sims, kind="stable")[:top_k]]:
                sim = float(vecs[j] @ tv)
                if sim >= (SIM_MIN if mu is not None else 0.9):
                    best.append((cand_units[int(j)], sim))
        literal = float("nan")
        lu = literal_units.get(name)
        if best and lu is not None and mu is not None:
            literal = float(_unit(by_unit[lu] - mu) @ tv)
        if best:
            shortlist.append((name, definition, best, literal))
    # the anchor is the earliest confirmed unit, so each term's candidates are asked in
    # the order they stand in the source, and a term stops at its first "yes": one round
    # of questions (packed into few decodes) per rank, most terms done after the first
    for _, _, best, _ in shortlist:
        best.sort(key=lambda c: units[c[0]].start)
    candidates = []
    anchors: dict[str, int] = {}
    if not confirm:
        for name, _, best, literal in shortlist:
            i, sim = best[0]
            candidates.append(Candidate(name, i, sim, None, literal))
            anchors[name] = units[i].start
        return Anchors(anchors, candidates, len(cand_units))
    open_ = list(range(len(shortlist)))
    for rank in range(top_k):
        open_ = [k for k in open_ if rank < len(shortlist[k][2])]
        if not open_:
            break
        asks = [(shortlist[k][0], shortlist[k][1], [text[units[shortlist[k][2][rank][0]].start:
                                                         units[shortlist[k][2][rank][0]].end]]) for k in open_]
        still = []
        for k, (margin,) in zip(open_, confirm_many(engine, cache, asks)):
            name, _, best, literal = shortlist[k]
            i, sim = best[rank]
            c = Candidate(name, i, sim, margin, literal)
            candidates.append(c)
            if c.confirmed:
                anchors[name] = units[i].start
            else:
                still.append(k)
        open_ = still
        if progress is not None:
            progress("confirm", len(shortlist) - len(open_), len(shortlist))
    return Anchors(anchors, candidates, len(cand_units))
