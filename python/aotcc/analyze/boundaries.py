"""Boundaries: where the model's surprisal says the topic shifts, so a chunk should end.

A sentence that continues the topic is easier to predict with the text before it than
without it; the first sentence of a new topic gains little or nothing from that context.
So each unit's opening `ONSET` tokens are scored twice: in context (the source decoded in
windows) and alone (after BOS only, many units side by side in one batch). The topic-shift
score of a unit is its in-context surprisal minus its surprisal alone (nats per token),
relative to the same quantity over the units just before it.

Window edges are content-defined (before a heading, before a paragraph whose text hash
picks it once the window is long enough, or when the next unit would overflow it), so an
edit moves only the edges near it and every other window keeps its cached result; a
window is decoded after a short prefix (the last unit of the window before). Scores alone
are cached per unit text. Logits are read only for the scored rows.

Logits rows are what this costs (Gemma's output layer is over twice the rest of the
model per row), so: windows are packed several to a decode with logits only on the
scored rows, and the onsets scored alone share a prefix tree (BOS and common openings
such as "- **" are decoded and scored once per batch).

Candidates are taken best first while they keep every chunk at least `min_fraction` of
the budget from another break, so breaks refine the budget-driven chunking instead of
shredding it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aotcc.analyze.cache import Cache, key_of
from aotcc.analyze.engine import Engine
from aotcc.units import HEADING, Unit

#: tokens scored at the start of each unit
ONSET = 4
#: window sizes in model tokens (content-defined edges between MIN and MAX)
WINDOW_MIN, WINDOW_MAX = 160, 448
#: tokens of the previous window's last unit decoded before a window
PREFIX = 48
#: units in the local baseline before a candidate
BASELINE = 6
VERSION = "boundaries-v4"


@dataclass(frozen=True)
class Window:
    start: int  # character span of the source
    end: int
    units: tuple[int, ...]  # indexes into the unit list
    prefix_start: int  # start of the carried-over context (== start when none)


def unit_tokens(engine: Engine, text: str, units: list[Unit]) -> list[int]:
    """Model tokens per unit (each tokenized alone: an estimate for sizing windows)."""
    return [len(engine.tokenize(text[u.start:u.end])) for u in units]


def windows(text: str, units: list[Unit], counts: list[int]) -> list[Window]:
    """Content-defined windows over `units` (see the module docstring)."""
    out: list[Window] = []
    cur: list[int] = []
    size = 0

    def close() -> None:
        if cur:
            prev = out[-1].units[-1] if out else None
            pstart = units[prev].start if prev is not None else units[cur[0]].start
            out.append(Window(units[cur[0]].start, units[cur[-1]].end, tuple(cur), pstart))

    for i, u in enumerate(units):
        t = counts[i]
        if cur:
            chosen = u.level >= 2 and zlib.crc32(text[u.start:u.end].encode("utf-8")) % 3 == 0
            # a heading opens a window unless the window so far is only headings (a
            # section's title and its subsection's stay together: a window of a lone
            # heading would pay a whole carried-over prefix to score one line)
            heading = u.kind == HEADING and any(units[j].kind != HEADING for j in cur)
            if heading or size + t > WINDOW_MAX or (size >= WINDOW_MIN and chosen):
                close()
                cur, size = [], 0
        cur.append(i)
        size += t
    close()
    return out


def _window_key(engine: Engine, text: str, units: list[Unit], w: Window) -> str:
    return key_of("surprisal", version=VERSION, onset=ONSET, prefix_tokens=PREFIX, settings=engine.settings,
                  prefix=text[w.prefix_start:w.start], body=text[w.start:w.end],
                  cuts=[units[i].start - w.start for i in w.units])


def window_pass(engine: Engine, text: str, units: list[Unit], w: Window) -> list[float | None]:
    """`window_passes` of one window."""
    return window_passes(engine, text, units, [w])[0]


def window_passes(engine: Engine, text: str, units: list[Unit], ws: list[Window]) -> list[list[float | None]]:
    """The mean onset surprisal of each unit of each window (None for a unit with no
    scored token), several windows to a decode. A window depends on nothing but its own
    text and carried-over prefix, so windows may be computed anywhere, in any order
    (`analyse(scatter=...)`). Each result is what the cache stores."""
    todo = []
    out: list[list[float | None]] = []
    for w in ws:
        body = text[w.start:w.end]
        prefix_text = text[w.prefix_start:w.start]
        toks = engine.tokenize(body)
        starts = engine.token_offsets(body, toks)
        prefix = engine.tokenize(prefix_text)[-PREFIX:] if prefix_text else []
        want: list[int] = []
        spans = []
        for i in w.units:
            s, e = units[i].start - w.start, units[i].end - w.start
            first = int(np.searchsorted(starts, s, side="left"))
            last = int(np.searchsorted(starts, e, side="left"))
            # a heading is a boundary already, and its own line says little about the
            # prose around it: it is decoded (context for what follows), not scored
            idx = [] if units[i].kind == HEADING else list(range(first, min(last, first + ONSET)))
            spans.append(idx)
            want += idx
        out.append([None] * len(w.units))
        if toks:
            todo.append((len(out) - 1, prefix, toks, want, spans))
    sups = engine.windows([(prefix, toks, want) for _, prefix, toks, want, _ in todo])
    for (k, _, _, _, spans), sup in zip(todo, sups):
        onset = [float(np.nanmean(sup[idx])) if idx else None for idx in spans]
        out[k] = [None if v is None or not np.isfinite(v) else v for v in onset]
    return out


def _alone_surprisal(engine: Engine, cache: Cache, text: str, units: list[Unit]) -> np.ndarray:
    """Mean surprisal of each unit's first ONSET tokens given nothing before them."""
    out = np.full(len(units), np.nan)
    todo: list[tuple[int, str, list[int]]] = []
    for i, u in enumerate(units):
        body = text[u.start:u.end].strip()
        if u.kind == HEADING or not body:  # headings are not scored (see window_passes)
            continue
        key = key_of("alone", version=VERSION, onset=ONSET, settings=engine.settings, body=body)
        hit = cache.get("alone", key)
        if hit is not None:
            out[i] = float("nan") if hit == "nan" else float(hit)
        else:
            todo.append((i, key, engine.tokenize(body)[:ONSET]))
    if todo:
        scored = engine.surprisal_alone([t for _, _, t in todo])
        for (i, key, _), s in zip(todo, scored):
            v = float(np.nanmean(s)) if np.isfinite(s).any() else float("nan")
            out[i] = v
            cache.put(key, "nan" if not np.isfinite(v) else v)
    return out


@dataclass
class Boundaries:
    """Per-unit surprisal in context and alone, the topic-shift score, and the breaks."""

    onset: np.ndarray  # per unit: mean surprisal of the first ONSET tokens in context (nats)
    alone: np.ndarray  # the same without context
    score: np.ndarray  # topic-shift score (0 for the first unit)
    breaks: list[int]  # character offsets (unit starts) where a chunk should end
    windows: int


Scatter = Callable[[str, list[Unit], list[Window]], list[list[float | None]]]


def analyse(engine: Engine, cache: Cache, text: str, units: list[Unit], budget: int, *,
            threshold: float = 1.0, min_fraction: float = 0.25,
            progress: Callable[[int, int], None] | None = None, scatter: Scatter | None = None) -> Boundaries:
    """Scores every unit and proposes breaks (see the module docstring). `scatter`
    computes the windows the cache does not hold elsewhere (`window_passes` on Ray
    workers, for instance); the result is the same as computing them here."""
    counts = unit_tokens(engine, text, units)
    ws = windows(text, units, counts)
    onset = np.full(len(units), np.nan)
    keys = [_window_key(engine, text, units, w) for w in ws]
    got: list[Any] = [cache.get("surprisal", k) for k in keys]
    todo = [k for k, g in enumerate(got) if g is None]
    if todo and scatter is not None:
        for k, r in zip(todo, scatter(text, units, [ws[k] for k in todo])):
            got[k] = r
            cache.put(keys[k], r)
    elif todo:
        step = 8  # windows per call (packed into decodes), so the progress bar moves
        for j in range(0, len(todo), step):
            part = todo[j : j + step]
            for k, r in zip(part, window_passes(engine, text, units, [ws[k] for k in part])):
                got[k] = r
                cache.put(keys[k], r)
            if progress is not None:
                progress(len(ws) - len(todo) + j + len(part), len(ws) + 1)
    for k, w in enumerate(ws):
        onset[list(w.units)] = [float("nan") if v is None else v for v in got[k]]
    alone = _alone_surprisal(engine, cache, text, units)
    if progress is not None:
        progress(len(ws) + 1, len(ws) + 1)
    gain = onset - alone  # how little the context helped
    score = np.zeros(len(units))
    for i in range(1, len(units)):
        prev = gain[max(0, i - BASELINE):i]
        prev = prev[np.isfinite(prev)]
        if np.isfinite(gain[i]) and prev.size:
            score[i] = gain[i] - float(np.median(prev))
    breaks = choose_breaks(units, counts, score, budget, threshold=threshold, min_fraction=min_fraction)
    return Boundaries(onset, alone, score, breaks, len(ws))


def choose_breaks(units: list[Unit], counts: list[int], score: np.ndarray, budget: int, *,
                  threshold: float, min_fraction: float) -> list[int]:
    """Unit starts whose score is above `threshold` nats and a local peak, best first,
    at least `min_fraction * budget` tokens from each other and from a heading."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    gap = max(1, int(budget * min_fraction))
    cand = [i for i in range(1, len(units))
            if score[i] >= threshold and units[i].kind != HEADING
            and score[i] >= score[i - 1] and (i + 1 >= len(units) or score[i] >= score[i + 1])]
    cand.sort(key=lambda i: (-score[i], i))
    fixed = [i for i, u in enumerate(units) if u.kind == HEADING and i > 0]
    taken: list[int] = []
    for i in cand:
        near = any(abs(int(cum[i]) - int(cum[j])) < gap for j in taken + fixed)
        if not near:
            taken.append(i)
    return sorted(units[i].start for i in taken)
