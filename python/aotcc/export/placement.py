"""Where the cacheable prefix is cut: breakpoints at chunk boundaries (every segment past
the provider's minimum, stable under late edits), and the chunk and segment rows an
export document records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from aotcc import _core
from aotcc.compiled import Compiled


def place_breakpoints(tokens: Sequence[int], min_tokens: int, max_breakpoints: int) -> list[int]:
    """Chunk indices after which a cache breakpoint goes (the last is the final chunk).

    Every segment between breakpoints holds at least `min_tokens`. The target segment
    size is the total split `max_breakpoints` ways, rounded up to a multiple of
    `min_tokens`, and each cut is the first chunk boundary past a multiple of it: a cut
    depends only on the chunks before it and on that rounded size, so an edit late in
    the prompt leaves every earlier block byte-identical (unless it moves the total
    across a multiple of `max_breakpoints * min_tokens`). Empty when the whole prefix is
    below the minimum: nothing is cacheable.
    """
    n = len(tokens)
    total = int(sum(tokens))
    if n == 0 or max_breakpoints <= 0 or total < max(min_tokens, 1):
        return []
    step = max(min_tokens, 1)
    size = step * max(1, math.ceil(total / (max_breakpoints * step)))
    cuts: list[int] = []
    cum = last = 0
    for i in range(n - 1):
        cum += int(tokens[i])
        if len(cuts) >= max_breakpoints - 1:
            break
        if cum >= (len(cuts) + 1) * size and cum - last >= min_tokens:
            cuts.append(i)
            last = cum
    while cuts and total - last < min_tokens:  # the final segment must meet the minimum too
        cuts.pop()
        last = int(sum(tokens[: cuts[-1] + 1])) if cuts else 0
    return cuts + [n - 1]


def chunk_rows(c: Compiled, counts: Sequence[int]) -> list[dict[str, Any]]:
    ch = c.chunks
    text = c.text
    rows = []
    byte = 0
    for i in range(len(ch)):
        s, e = int(ch.out_start[i]), int(ch.out_end[i])
        data = text[s:e].encode("utf-8")
        rows.append({"index": i, "chars": [s, e], "bytes": [byte, byte + len(data)], "tokens": int(counts[i]),
                     "blake3": _core.blake3_hex(data)})
        byte += len(data)
    return rows


def segments(chunks: list[dict[str, Any]], cuts: list[int], c: Compiled) -> list[dict[str, Any]]:
    """Consecutive chunk runs ending at each breakpoint (one run when nothing is cacheable)."""
    ends = cuts or [len(chunks) - 1]
    out = []
    first = 0
    for end in ends:
        run = chunks[first : end + 1]
        s, e = run[0]["chars"][0], run[-1]["chars"][1]
        out.append({"chunks": [first, end], "chars": [s, e], "bytes": [run[0]["bytes"][0], run[-1]["bytes"][1]],
                    "tokens": sum(r["tokens"] for r in run), "cumulative_tokens": sum(r["tokens"] for r in chunks[: end + 1]),
                    "breakpoint": bool(cuts)})
        first = end + 1
    return out


__all__ = ["chunk_rows", "place_breakpoints", "segments"]
