"""Units: the structural pieces the core cuts a source into (headings, paragraphs, list
items, fenced code, the later sentences of a paragraph), as character spans. The rules
are the core's own (`rust/segment.rs`); this module only names the kinds, so analysis
sees exactly the boundaries the compiler chunks at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aotcc import _core

#: unit kinds, by the index the core returns
HEADING, PARAGRAPH, LIST_ITEM, CODE, SENTENCE = "heading", "paragraph", "list_item", "code", "sentence"
KINDS = (HEADING, PARAGRAPH, LIST_ITEM, CODE, SENTENCE)
#: how strong the boundary before a unit is: 3 section, 2 block, 1 sentence (as in the core)
_LEVEL = {HEADING: 3, PARAGRAPH: 2, LIST_ITEM: 2, CODE: 2, SENTENCE: 1}


@dataclass(frozen=True)
class Unit:
    """`[start, end)` in characters of the joined source, trailing white space included."""

    start: int
    end: int
    kind: str
    block: int  # index of the heading, paragraph, list item or code block it belongs to

    @property
    def level(self) -> int:
        return _LEVEL[self.kind]


def segment(text: str, file_starts: Sequence[int] = ()) -> list[Unit]:
    """The units of `text` (they tile it). `file_starts` are character offsets where a
    new file begins; no unit spans one."""
    cols = _core.segment(text, [int(s) for s in file_starts])
    out: list[Unit] = []
    block = -1
    for s, e, k in zip(cols["start"].tolist(), cols["end"].tolist(), cols["kind"].tolist()):
        kind = KINDS[k]
        if kind != SENTENCE:
            block += 1
        out.append(Unit(s, e, kind, max(block, 0)))
    return out


__all__ = ["CODE", "HEADING", "KINDS", "LIST_ITEM", "PARAGRAPH", "SENTENCE", "Unit", "segment"]
