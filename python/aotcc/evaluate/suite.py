"""The task-suite format of `aotcc eval`: cases (a master prompt, its term spec and
questions whose answer sits in one term's definition), read from TOML or JSON,
validated with errors that name the field, and written back as TOML.

A suite file holds either explicit `[[case]]` tables or a `[generate]` table that
`aotcc.evaluate.generate` expands deterministically from a seed (or both: generated
cases first). The format is documented in docs/eval.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aotcc import _io
from aotcc._io import read_input
from aotcc.errors import InputError
from aotcc.evaluate.cases import Case, Question, Suite
from aotcc.evaluate.generate import GenConfig, generate_cases

FORMAT = "aotcc-eval-suite/1"


# --- reading -------------------------------------------------------------------------


class _Fields:
    """Typed field access on one table, with errors naming `where.field`."""

    def __init__(self, where: str, table: Any, sep: str = ".") -> None:
        if not isinstance(table, dict):
            raise InputError(f"{where}: expected a table, got {_kind(table)}")
        self.where = where
        self.sep = sep
        self.t = table

    def _err(self, name: str, msg: str) -> InputError:
        return InputError(f"{self.where}{self.sep}{name}: {msg}")

    def string(self, name: str, *, required: bool = True, default: str | None = None, empty: bool = False) -> Any:
        v = self.t.get(name)
        if v is None:
            if required:
                raise self._err(name, "missing")
            return default
        if not isinstance(v, str):
            raise self._err(name, f"expected a string, got {_kind(v)}")
        if not empty and not v.strip():
            raise self._err(name, "is empty")
        return v

    def integer(self, name: str, *, required: bool = True, default: int | None = None, low: int = 1) -> Any:
        v = self.t.get(name)
        if v is None:
            if required:
                raise self._err(name, "missing")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._err(name, f"expected a whole number, got {_kind(v)}")
        if v < low:
            raise self._err(name, f"must be at least {low}, got {v}")
        return v

    def fraction(self, name: str) -> float | None:
        v = self.t.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise self._err(name, f"expected a number from 0 to 1, got {v!r}")
        return float(v)

    def strs(self, name: str, *, required: bool = True, least: int = 1) -> list[str]:
        v = self.t.get(name)
        if v is None:
            if required:
                raise self._err(name, "missing")
            return []
        if not isinstance(v, list):
            raise self._err(name, f"expected a list of strings, got {_kind(v)}")
        for i, x in enumerate(v):
            if not isinstance(x, str) or not x.strip():
                raise InputError(f"{self.where}{self.sep}{name}[{i}]: expected a non-empty string, got {x!r}")
        if len(v) < least:
            raise self._err(name, f"needs at least {least} entr{'y' if least == 1 else 'ies'}")
        return list(v)

    def tables(self, name: str) -> list[Any]:
        v = self.t.get(name, [])
        if not isinstance(v, list):
            raise self._err(name, f"expected a list of tables ([[{name}]]), got {_kind(v)}")
        return v

    def unknown(self, known: Iterable[str]) -> None:
        extra = sorted(set(self.t) - set(known))
        if extra:
            raise self._err(extra[0], f"unknown field (known: {', '.join(sorted(known))})")


def _kind(v: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(v), type(v).__name__
    )


def parse_document(data: bytes, name: str) -> Any:
    """A suite file's bytes as a document: JSON when it starts with `{`, else TOML."""
    return _io.parse_document(data, name, json_starts="{")


def load_suite(path: str | os.PathLike[str], *, lengths: Sequence[int] | None = None) -> Suite:
    """Read and validate a suite file. `[generate]` cases are expanded here; `lengths`
    replaces the generator's lengths (and selects among explicit cases)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a suite file")
    doc = parse_document(read_input(p), str(p))
    return suite_from_document(doc, str(p), base=p.parent, lengths=lengths, path=p)


def suite_from_document(
    doc: Any,
    name: str,
    *,
    base: Path | None = None,
    lengths: Sequence[int] | None = None,
    path: Path | None = None,
) -> Suite:
    top = _Fields(name, doc, sep=": ")
    top.unknown(["format", "name", "description", "generate", "case"])
    fmt = doc.get("format")
    if fmt is not None and fmt != FORMAT:
        raise InputError(f"{name}: format {fmt!r} is not supported (expected {FORMAT!r})")
    suite_name = top.string("name", required=False, default=Path(name).stem)
    description = top.string("description", required=False, default="", empty=True)
    cases: list[Case] = []
    generator = None
    if "generate" in doc:
        cfg = GenConfig.from_table(doc["generate"], f"{name}: generate")
        if lengths:
            cfg = replace(cfg, lengths=tuple(lengths))
        generator = cfg.to_table()
        cases += generate_cases(cfg)
    explicit = [_case(t, f"{name}: case[{i}]", base) for i, t in enumerate(top.tables("case"))]
    if lengths and explicit:
        have = {c.length for c in explicit}
        if generator is None:
            missing = [n for n in lengths if n not in have]
            if missing:
                known = ", ".join(sorted(str(n) for n in have if n is not None)) or "none"
                raise InputError(f"{name}: no case of length {missing[0]} (lengths in this suite: {known})")
        explicit = [c for c in explicit if c.length in set(lengths)]
    cases += explicit
    if not cases:
        raise InputError(f"{name}: no [[case]] and no [generate] table: nothing to evaluate")
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise InputError(f"{name}: two cases have the id {c.id!r}")
        seen.add(c.id)
    return Suite(suite_name, tuple(cases), description, generator, path)


def _case(table: Any, where: str, base: Path | None) -> Case:
    f = _Fields(where, table)
    f.unknown(["id", "length", "prompt", "prompt_file", "options", "term", "terms_file", "question"])
    cid = f.string("id", required=False, default=where.rsplit(": ", 1)[-1])
    length = f.integer("length", required=False)
    if ("prompt" in table) == ("prompt_file" in table):
        raise InputError(f"{where}.prompt: give exactly one of prompt and prompt_file")
    if "prompt" in table:
        prompt = f.string("prompt")
    else:
        rel = f.string("prompt_file")
        pp = (base or Path(".")) / rel
        try:
            prompt = pp.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise InputError(f"{where}.prompt_file: {pp}: no such file") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{where}.prompt_file: {pp}: invalid UTF-8 at byte {e.start}") from None
    terms = _terms(f, table, where, base)
    names = {t["name"] for t in terms["terms"]}
    questions = []
    for j, qt in enumerate(f.tables("question")):
        q = _question(qt, f"{where}.question[{j}]", j)
        if q.term not in names:
            raise InputError(f"{where}.question[{j}].term: {q.term!r} is not a term of this case's spec")
        questions.append(q)
    if not questions:
        raise InputError(f"{where}.question: no questions ([[case.question]])")
    ids = [q.id for q in questions]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise InputError(f"{where}.question: two questions have the id {dup!r}")
    return Case(cid, length, prompt, terms, tuple(questions))


def _terms(f: _Fields, table: Any, where: str, base: Path | None) -> dict[str, Any]:
    if ("term" in table) == ("terms_file" in table):
        raise InputError(f"{where}.term: give exactly one of [[case.term]] tables and terms_file")
    if "terms_file" in table:
        from aotcc.spec import load_spec

        rel = f.string("terms_file")
        pp = (base or Path(".")) / rel
        if not pp.is_file():
            raise InputError(f"{where}.terms_file: {pp}: no such file")
        doc = json.loads(load_spec(pp)[0])
        terms = doc if isinstance(doc, list) else doc.get("terms", [])
        options = {} if isinstance(doc, list) else dict(doc.get("options", {}))
    else:
        terms = f.tables("term")
        options = table.get("options", {})
        if not isinstance(options, dict):
            raise InputError(f"{where}.options: expected a table, got {_kind(options)}")
    for i, t in enumerate(terms):
        tf = _Fields(f"{where}.term[{i}]", t)
        tf.string("name")
        tf.string("definition")
    return {"options": options, "terms": [dict(t) for t in terms]}


def _question(table: Any, where: str, index: int) -> Question:
    f = _Fields(where, table)
    f.unknown(["id", "term", "ask", "answer", "wrong", "depth", "kind"])
    answer = f.string("answer")
    wrong = f.strs("wrong")
    folded = [w.strip().casefold() for w in wrong]
    if answer.strip().casefold() in folded:
        raise InputError(f"{where}.wrong: contains the right answer {answer!r}")
    if len(set(folded)) != len(folded):
        raise InputError(f"{where}.wrong: lists a candidate twice")
    return Question(
        id=f.string("id", required=False, default=f"q{index}"),
        term=f.string("term"),
        ask=f.string("ask"),
        answer=answer,
        wrong=tuple(wrong),
        depth=f.fraction("depth"),
        kind=f.string("kind", required=False),
    )


# --- writing -------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_str(s: str) -> str:
    """A TOML string for `s`: a multi-line literal for prose (readable), else a basic string."""
    if "\n" in s and "'''" not in s and not s.endswith("'") and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", s):
        return "'''\n" + s + "'''"  # the newline right after the opening quotes is trimmed by parsers
    # JSON string escapes are valid TOML basic-string escapes; DEL must be escaped too
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def dump_suite(suite: Suite) -> bytes:
    """The suite as a TOML file of explicit cases (a generated suite's cases written out,
    its `[generate]` table kept as a comment). Same suite, same bytes."""
    out = [f"# aotcc eval suite: {suite.name}", f"format = {_toml_str(FORMAT)}", f"name = {_toml_str(suite.name)}"]
    if suite.description:
        out.append(f"description = {_toml_str(suite.description)}")
    if suite.generator is not None:
        out.append("# expanded from [generate]: " + json.dumps(suite.generator, sort_keys=True))
    for c in suite.cases:
        out += ["", "[[case]]", f"id = {_toml_str(c.id)}"]
        if c.length is not None:
            out.append(f"length = {c.length}")
        out.append(f"prompt = {_toml_str(c.prompt)}")
        if c.terms.get("options"):
            out += ["", "[case.options]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in c.terms["options"].items()]
        for t in c.terms["terms"]:
            out += ["", "[[case.term]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in t.items()]
        for q in c.questions:
            out += ["", "[[case.question]]", f"id = {_toml_str(q.id)}", f"term = {_toml_str(q.term)}",
                    f"ask = {_toml_str(q.ask)}", f"answer = {_toml_str(q.answer)}", f"wrong = {_toml_value(list(q.wrong))}"]
            if q.depth is not None:
                out.append(f"depth = {q.depth!r}")
            if q.kind is not None:
                out.append(f"kind = {_toml_str(q.kind)}")
    return ("\n".join(out) + "\n").encode("utf-8")


__all__ = ["FORMAT", "dump_suite", "load_suite", "parse_document", "suite_from_document"]
