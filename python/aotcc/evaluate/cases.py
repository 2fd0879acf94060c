"""The data of an eval: questions, cases (a master prompt at one length, its term spec and
its questions) and suites, plus where an answer occurs in a text. Reading and writing
suite files is `aotcc.evaluate.suite`; generating cases is `aotcc.evaluate.generate`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aotcc.errors import InputError


@dataclass(frozen=True)
class Question:
    """One question: `ask` names `term`; `answer` is stated in that term's definition;
    `wrong` are plausible alternatives (in generated suites, other terms' values)."""

    id: str
    term: str
    ask: str
    answer: str
    wrong: tuple[str, ...]
    depth: float | None = None  # where the term first appears in the prompt, 0 (start) .. 1 (end)
    kind: str | None = None  # what is asked for ("colour", "code", ...), for the report only

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.answer, *self.wrong)


@dataclass(frozen=True)
class Case:
    """One master prompt at one context length, with its term spec and questions."""

    id: str
    length: int | None  # nominal context length in tokens (the plot's x axis); None: measured
    prompt: str
    terms: dict[str, Any]  # a term spec document: {"options": {...}, "terms": [...]}
    questions: tuple[Question, ...]

    def term(self, name: str) -> dict[str, Any]:
        for t in self.terms["terms"]:
            if t["name"] == name:
                return t
        raise KeyError(name)


@dataclass(frozen=True)
class Suite:
    """A named list of cases; `generator` is the `[generate]` table they came from, if any."""

    name: str
    cases: tuple[Case, ...]
    description: str = ""
    generator: dict[str, Any] | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def n_questions(self) -> int:
        return sum(len(c.questions) for c in self.cases)

    def lengths(self) -> list[int | None]:
        return sorted({c.length for c in self.cases}, key=lambda x: (x is None, x or 0))

    def select(self, lengths: Sequence[int]) -> Suite:
        """The cases with these nominal lengths; an absent length is an error naming the ones there are."""
        have = {c.length for c in self.cases}
        missing = [n for n in lengths if n not in have]
        if missing:
            known = ", ".join(str(n) for n in self.lengths() if n is not None) or "none"
            where = self.path or self.name
            raise InputError(f"{where}: no case of length {missing[0]} (lengths in this suite: {known})")
        keep = set(lengths)
        return replace(self, cases=tuple(c for c in self.cases if c.length in keep))


# --- where an answer comes from ------------------------------------------------------


def word_spans(text: str, word: str) -> list[tuple[int, int]]:
    """Whole-word, case-insensitive occurrences of `word` in `text` (character spans)."""
    pat = re.compile(r"(?<!\w)" + re.escape(word) + r"(?!\w)", re.IGNORECASE)
    return [m.span() for m in pat.finditer(text)]


def answer_leaks(question: Question, text: str, definition_span: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Occurrences of the question's answer in `text` outside its term's definition block:
    each one is a second source of the answer, so the question would not measure whether
    the definition was used."""
    s, e = definition_span if definition_span is not None else (0, 0)
    return [(a, b) for a, b in word_spans(text, question.answer) if not (s <= a and b <= e)]


__all__ = ["Case", "Question", "Suite", "answer_leaks", "word_spans"]
