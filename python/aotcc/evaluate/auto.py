"""`aotcc eval --auto`: a suite built from a user's own prompt and term spec.

Each definition's facts become fill-in-the-blank questions: the sentence of the
definition that states the fact, with the fact blanked, asked about the term by name.
The candidates are the fact and wrong answers of the same kind drawn from other
definitions (other durations for a duration, other amounts for an amount, other tool
names for a tool name), topped up, when the spec has too few, by nearby numbers of the
same unit. The user's prompt stays the prompt: the questions are the only additions.

Fact kinds: durations (`72 hours`, `ten seconds`), amounts (`$20`, `15%`), counts (`120
words`, `three per account`) and codes (`verify_identity`, `P1`, `RMA-7`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from aotcc.errors import InputError
from aotcc.evaluate.cases import Case, Question, Suite

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90}
_NUM = r"(?:\d+(?:[.,]\d+)?|" + "|".join(sorted(_WORDS[1:] + list(_TENS), key=len, reverse=True)) + r")"
_UNITS = {"second": "time", "minute": "time", "hour": "time", "day": "time", "week": "time", "month": "time",
          "year": "time", "business day": "time", "working day": "time"}
_DURATION = re.compile(rf"\b({_NUM})[ -](business days?|working days?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b", re.I)
_MONEY = re.compile(r"(?<![\w$€£])([$€£]\s?\d[\d,]*(?:\.\d+)?)(?!\w)|\b(\d[\d,]*(?:\.\d+)?\s?(?:%|percent))", re.I)
_COUNT = re.compile(rf"\b(?:at most|at least|up to|exactly|maximum of|minimum of|no more than|limit of)\s+({_NUM})\b(\s+[a-z][a-z-]+)?", re.I)
_CODE = re.compile(r"(?<![\w-])([a-z]+(?:_[a-z0-9]+)+|[A-Z]{1,4}-?\d{1,4}[A-Z]?)(?![\w-])")
_SENTENCE = re.compile(r"[^.!?;]*(?:[.!?;]|$)")
MAX_PER_TERM = 4


@dataclass(frozen=True)
class Fact:
    term: str
    kind: str  # "duration:hour", "amount:$", "count:words", "code:snake"
    value: str  # as written in the definition
    sentence: str  # the definition's sentence that states it


def _number(text: str) -> int | None:
    t = text.lower().replace(",", "")
    if t in _WORDS:
        return _WORDS.index(t)
    if t in _TENS:
        return _TENS[t]
    try:
        v = float(t)
    except ValueError:
        return None
    return int(v) if v == int(v) else None


def _spell(n: int, like: str) -> str:
    """`n` written as `like` is (a word for a word, digits for digits)."""
    if like.lower() in _WORDS or like.lower() in _TENS:
        if n < len(_WORDS):
            w = _WORDS[n]
            return w.capitalize() if like[:1].isupper() else w
    return str(n)


def facts(term: str, definition: str) -> list[Fact]:
    """The askable facts of one definition, in order, at most `MAX_PER_TERM`."""
    out: list[Fact] = []
    seen: set[str] = set()
    for sent in (m.group(0).strip() for m in _SENTENCE.finditer(definition)):
        if len(sent) < 12:
            continue
        found: list[tuple[str, str]] = []
        for m in _DURATION.finditer(sent):
            unit = m.group(2).lower().rstrip("s")
            found.append((f"duration:{_UNITS.get(unit, unit)}", m.group(0)))
        for m in _MONEY.finditer(sent):
            v = m.group(1) or m.group(2)
            found.append(("amount:%" if "%" in v or "percent" in v.lower() else f"amount:{v[0]}", v))
        for m in _COUNT.finditer(sent):
            noun = (m.group(2) or "").strip().lower()
            if any(v in m.group(0) for _, v in found):
                continue
            found.append((f"count:{noun or '-'}", m.group(1)))
        for m in _CODE.finditer(sent):
            v = m.group(1)
            found.append(("code:snake" if "_" in v else "code:id", v))
        for kind, value in found:
            if value.lower() in seen:
                continue
            seen.add(value.lower())
            out.append(Fact(term, kind, value, sent))
    return out[:MAX_PER_TERM]


def _perturbed(value: str, kind: str) -> list[str]:
    """Nearby values of the same unit, for kinds other definitions do not supply."""
    m = re.search(r"\d[\d,]*(?:\.\d+)?|[A-Za-z]+", value)
    if kind.startswith("code") or m is None:
        return []
    n = _number(m.group(0))
    if n is None or n <= 0:
        return []
    cands = [2 * n, max(1, n // 2), n + 1 if n < 10 else n + 10, 3 * n, n - 1]
    out = []
    for c in cands:
        if c != n and c > 0:
            v = value[: m.start()] + _spell(c, m.group(0)) + value[m.end():]
            if v not in out:
                out.append(v)
    return out


def questions(spec_terms: list[dict[str, object]], *, candidates: int = 4, seed: int = 0) -> list[Question]:
    """Fill-in-the-blank questions for every fact of every definition."""
    all_facts = [f for t in spec_terms for f in facts(str(t["name"]), str(t["definition"]))]
    by_kind: dict[str, list[str]] = {}
    for f in all_facts:
        vals = by_kind.setdefault(f.kind, [])
        if f.value.lower() not in (v.lower() for v in vals):
            vals.append(f.value)
    rng = random.Random(f"aotcc-eval-auto:{seed}")
    out = []
    for i, f in enumerate(all_facts):
        others = [v for v in by_kind[f.kind] if v.lower() != f.value.lower() and v.lower() not in f.sentence.lower()]
        rng.shuffle(others)
        wrong = others[: candidates - 1]
        for v in _perturbed(f.value, f.kind):
            if len(wrong) >= candidates - 1:
                break
            if v.lower() not in (w.lower() for w in wrong) and v.lower() not in f.sentence.lower():
                wrong.append(v)
        if not wrong:
            continue
        blank = f.sentence.replace(f.value, "___", 1)
        out.append(Question(
            id=f"q{i:03d}", term=f.term, ask=f'About the {f.term}: "{blank}" What fills the blank?',
            answer=f.value, wrong=tuple(wrong), kind=f.kind.split(":")[0],
        ))
    return out


def auto_suite(sources: list[tuple[str, bytes]], spec_doc: dict[str, object], spec_name: str, *,
               candidates: int = 4, seed: int = 0) -> Suite:
    """One case: the user's prompt (files joined) with its spec, and the generated
    questions; each question's depth is where its term first appears in the prompt."""
    import aotcc

    try:
        prompt = "".join(data.decode("utf-8") for _, data in sources)
    except UnicodeDecodeError as e:
        raise InputError(f"prompt: invalid UTF-8 at byte {e.start}") from None
    terms = spec_doc.get("terms") if isinstance(spec_doc, dict) else None
    if not isinstance(terms, list) or not terms:
        raise InputError(f"{spec_name}: no terms")
    qs = questions([t for t in terms if isinstance(t, dict)], candidates=candidates, seed=seed)
    if not qs:
        names = ", ".join(repr(t.get("name")) for t in terms[:3] if isinstance(t, dict))
        raise InputError(
            f"{spec_name}: no definition states a fact eval --auto can ask about (a duration, amount, count or code); "
            f"terms checked: {names}{', …' if len(terms) > 3 else ''}")
    c = aotcc.compile(prompt, spec_doc, references="keep", progress=False)
    first = {t.name: t.first_offset for t in c.terms}
    size = max(1, len(prompt))
    asked = []
    for q in qs:
        at = first.get(q.term)
        if at is None:  # a term the prompt never mentions: its definition is never injected
            continue
        asked.append(Question(q.id, q.term, q.ask, q.answer, q.wrong, depth=round(at / size, 4), kind=q.kind))
    if not asked:
        raise InputError(f"{spec_name}: the prompt mentions none of the terms whose definitions hold a fact")
    name = sources[0][0] if len(sources) == 1 else f"{sources[0][0]} (+{len(sources) - 1})"
    case = Case("auto", None, prompt, dict(spec_doc), tuple(asked))
    return Suite(f"auto: {name}", (case,), f"{len(asked)} questions generated from {spec_name}")


__all__ = ["Fact", "auto_suite", "facts", "questions"]
