"""Units for analysis: the same Markdown-aware pieces the core segments (headings,
paragraphs, list items, fenced code, sentences), as character spans of the joined
source.

Analysis needs the unit boundaries in Python (a break is proposed at a sentence end, an
anchor at a unit start), and the core does not expose its segmenter, so this module
follows the rules of `rust/segment.rs`. A small disagreement is harmless: the core
closes a chunk at its own unit boundary at or after a break offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: unit kinds; `level` is how strong the boundary before the unit is (as in the core)
HEADING, PARAGRAPH, LIST_ITEM, CODE, SENTENCE = "heading", "paragraph", "list_item", "code", "sentence"
_LEVEL = {HEADING: 3, PARAGRAPH: 2, LIST_ITEM: 2, CODE: 2, SENTENCE: 1}

_HEADING = re.compile(r" {0,3}#{1,6}(?:\s|$)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST = re.compile(r"[ \t]*(?:[-*+][ \t]|\d{1,9}[.)](?:\s|$))")
_SENTENCE_END = re.compile(r"[.!?][\"')\]*_]*(?=\s)|[\u3002\uff01\uff1f]")


@dataclass(frozen=True)
class Unit:
    """`[start, end)` in characters of the joined source, trailing white space included."""

    start: int
    end: int
    kind: str
    block: int  # index of the paragraph/list item/heading/code block it belongs to

    @property
    def level(self) -> int:
        return _LEVEL[self.kind]


def _sentence_cuts(text: str, start: int, end: int) -> list[int]:
    cuts = []
    pos = start
    while True:
        m = _SENTENCE_END.search(text, pos, end)
        if m is None:
            return cuts
        j = m.end()
        while j < end and text[j].isspace() and text[j] in " \t\n\r\x0b\x0c":
            j += 1
        if j < end and not text[j].islower():
            cuts.append(j)
        pos = max(j, m.start() + 1)


def segment(text: str, file_starts: tuple[int, ...] = ()) -> list[Unit]:
    """The units of `text` (they tile it). `file_starts` are character offsets where a
    new file begins; no unit spans one."""
    blocks: list[tuple[int, int, str]] = []
    current: tuple[int, str] | None = None
    after_blank = False
    open_fence: tuple[str, int] | None = None
    starts = sorted(s for s in file_starts if s > 0)
    nxt = 0
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        line_end = n if nl < 0 else nl + 1
        file_break = nxt < len(starts) and starts[nxt] <= pos
        if file_break:
            while nxt < len(starts) and starts[nxt] <= pos:
                nxt += 1
            open_fence = None
        if nxt < len(starts) and starts[nxt] < line_end:
            line_end = starts[nxt]
        line = text[pos:line_end]
        kind: str | None = None
        if open_fence is not None:
            m = _FENCE.match(line)
            if m and m.group(1)[0] == open_fence[0] and len(m.group(1)) >= open_fence[1] and not line[m.end():].strip():
                open_fence = None
        elif not line.strip() and not file_break:
            after_blank = True
        elif (m := _FENCE.match(line)) is not None:
            open_fence = (m.group(1)[0], len(m.group(1)))
            kind = CODE
        elif _HEADING.match(line):
            kind = HEADING
        elif _LIST.match(line):
            kind = LIST_ITEM
        elif file_break or after_blank or current is None or current[1] in (HEADING, CODE):
            kind = PARAGRAPH
        if kind is not None:
            if current is not None:
                blocks.append((current[0], pos, current[1]))
                start = pos
            else:
                start = 0  # leading blank lines belong to the first block
            current = (start, kind)
            after_blank = False
        pos = line_end
    if current is not None:
        blocks.append((current[0], n, current[1]))
    elif n:
        blocks.append((0, n, PARAGRAPH))
    units: list[Unit] = []
    for b, (start, end, kind) in enumerate(blocks):
        if kind in (HEADING, CODE):
            units.append(Unit(start, end, kind, b))
            continue
        s = start
        for cut in [*_sentence_cuts(text, start, end), end]:
            if cut > s:
                units.append(Unit(s, cut, kind if s == start else SENTENCE, b))
                s = cut
    return units
