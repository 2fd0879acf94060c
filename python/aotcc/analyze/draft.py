"""Drafting a term spec from a prompt that has a glossary or definitions in prose, for a
person to review.

Two sources, merged: a deterministic extractor of glossary-shaped lines
(`**Term**: definition`, `Term — definition`, `Term means …`, with `Term (ALIAS)` giving
an alias), and the model, asked for a JSON list of terms. A 270M model is weak, so what
it proposes is kept only when the name occurs in the prompt, and it is marked in the
TOML as proposed by the model. The model's first answer is unconstrained; a malformed
one is retried once under a GBNF grammar that only admits the JSON shape wanted
(llama.cpp's grammar sampler, checked against the greedy token first so most steps cost
one check), and a second failure is reported, not fatal. The draft is checked with the
spec loader and the core before it is written (atomically).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aotcc.analyze.cache import Cache, key_of
from aotcc.analyze.engine import Engine

VERSION = "draft-v1"
MAX_TERMS = 12
MAX_NEW_TOKENS = 320
#: source tokens per drafting piece (prompt + answer fit the engine's context)
PIECE_TOKENS = 520
MAX_PIECES = 8

GRAMMAR = r"""
root  ::= "[" ws ( item ( "," ws item ){0,11} )? ws "]"
item  ::= "{" ws "\"name\":" ws str "," ws "\"aliases\":" ws "[" ( str ( "," ws str ){0,3} )? "]" "," ws "\"definition\":" ws long ws "}"
str   ::= "\"" [^"\\\x00-\x1f]{1,60} "\""
long  ::= "\"" [^"\\\x00-\x1f]{1,400} "\""
ws    ::= [ \n]{0,2}
"""

_ASK = (
    "Read the text below. List the special terms it defines (names of policies, products, states or "
    "roles that the text explains). Answer only with JSON: a list of objects with the keys "
    "\"name\" (the term as written), \"aliases\" (other names used for it in the text, or []) and "
    "\"definition\" (one or two sentences from the text that say what it is).\n\nText:\n{text}"
)

_NAME = r"[A-Za-z0-9][\w'’/&+.-]*(?: [\w'’/&+.-]+){0,5}"
_PATTERNS = [
    # **Term**: definition / **Term:** definition / **Term** — definition (list marker optional)
    re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?\*\*(?P<name>[^*\n]{1,80}?):?\*\*\s*(?:[:—–-]\s*)?(?P<def>\S.*)$"),
    # Term — definition / Term – definition / Term -- definition
    re.compile(rf"^\s*(?:[-*+]\s+)?(?P<name>{_NAME}(?: \([^)\n]{{1,30}}\))?)\s+(?:—|–|--)\s+(?P<def>\S.*)$"),
    # Term means definition (the whole sentence is the definition)
    re.compile(r"^\s*(?:[-*+]\s+)?(?:(?:An?|The) )?(?P<name>[A-Z][\w'’/&+.-]*(?: [\w'’/&+.-]+){0,4}(?: \([^)\n]{1,30}\))?) (?:means|refers to|is defined as) (?P<def>\S.*)$"),
]
_PAREN_ALIAS = re.compile(r"^(?P<name>.*?)\s*\((?P<alias>[^)]{1,30})\)$")


@dataclass
class Entry:
    name: str
    definition: str
    aliases: list[str] = field(default_factory=list)
    origin: str = "extracted"  # or "model"
    line: int | None = None


@dataclass
class Draft:
    entries: list[Entry]
    attempts: list[dict[str, Any]]  # per model call: piece, grammar, stop, ok, reason
    dropped: list[str]  # model proposals left out, with the reason
    pieces: int
    pieces_total: int

    def to_spec(self) -> dict[str, Any]:
        terms = []
        for e in self.entries:
            t: dict[str, Any] = {"name": e.name}
            if e.aliases:
                t["aliases"] = e.aliases
            t["definition"] = e.definition
            terms.append(t)
        return {"terms": terms}


def extract(text: str) -> list[Entry]:
    """Glossary-shaped lines of `text`, in order; the first definition of a name wins."""
    out: list[Entry] = []
    seen: set[str] = set()
    in_code = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
            continue
        if in_code or line.lstrip().startswith("#"):
            continue
        for k, pat in enumerate(_PATTERNS):
            m = pat.match(line)
            if not m:
                continue
            name = m.group("name").strip().strip("*").strip()
            definition = m.group("def").strip()
            if k == 2:
                definition = line.strip().lstrip("-*+ ").strip()
            definition = definition.replace("**", "").strip()
            aliases: list[str] = []
            pm = _PAREN_ALIAS.match(name)
            if pm:
                name, alias = pm.group("name").strip(), pm.group("alias").strip()
                if alias and alias.casefold() != name.casefold():
                    aliases.append(alias)
            if not name or len(name) > 80 or not definition or len(definition.split()) < 2:
                continue
            if name.casefold() in seen:
                break
            seen.add(name.casefold())
            out.append(Entry(name, definition, aliases, "extracted", lineno))
            break
    return out


def parse_answer(answer: str) -> list[dict[str, Any]] | None:
    """The list of term objects in a model answer, or None when it is malformed."""
    s, e = answer.find("["), answer.rfind("]")
    if s < 0 or e <= s:
        return None
    try:
        doc = json.loads(answer[s : e + 1])
    except ValueError:
        return None
    if not isinstance(doc, list):
        return None
    items = []
    for it in doc:
        if not isinstance(it, dict) or not isinstance(it.get("name"), str) or not isinstance(it.get("definition"), str):
            return None
        aliases = it.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            return None
        items.append({"name": it["name"], "aliases": aliases, "definition": it["definition"]})
    return items


def _pieces(engine: Engine, text: str) -> list[str]:
    """The prompt cut at paragraph ends into pieces of about PIECE_TOKENS model tokens."""
    paras = re.split(r"(?<=\n)\n", text)
    out: list[str] = []
    cur, size = "", 0
    for p in paras:
        n = len(engine.tokenize(p))
        if cur and size + n > PIECE_TOKENS:
            out.append(cur)
            cur, size = "", 0
        if n > PIECE_TOKENS:  # one huge paragraph: keep its head
            toks = engine.tokenize(p)[:PIECE_TOKENS]
            p, n = engine.model.detokenize(toks), PIECE_TOKENS
        cur += p
        size += n
    if cur.strip():
        out.append(cur)
    return out


def _ask(engine: Engine, cache: Cache, piece: str, grammar: bool) -> tuple[str, str]:
    prompt = engine.chat(_ASK.format(text=piece.strip()))
    key = key_of("draft", version=VERSION, settings=engine.settings, prompt=prompt, grammar=GRAMMAR if grammar else None,
                 max_tokens=MAX_NEW_TOKENS)

    def compute() -> list[str]:
        text, stop = engine.generate(prompt, max_tokens=MAX_NEW_TOKENS, grammar=GRAMMAR if grammar else None)
        return [text, stop]

    text, stop = cache.through("draft", key, compute)
    return text, stop


def draft(engine: Engine | None, cache: Cache, text: str, *, use_model: bool = True,
          progress: Callable[[int, int], None] | None = None) -> Draft:
    """Extracted entries plus the model's proposals (see the module docstring)."""
    entries = extract(text)
    known = {e.name.casefold() for e in entries} | {a.casefold() for e in entries for a in e.aliases}
    folded = text.casefold()
    attempts: list[dict[str, Any]] = []
    dropped: list[str] = []
    pieces: list[str] = []
    total = 0
    if use_model and engine is not None:
        pieces = _pieces(engine, text)
        total = len(pieces)
        pieces = pieces[:MAX_PIECES]
        for k, piece in enumerate(pieces):
            items = None
            for grammar in (False, True):
                answer, stop = _ask(engine, cache, piece, grammar)
                items = parse_answer(answer)
                reason = "ok" if items is not None else (f"stopped at {stop} before the JSON closed" if stop == "length"
                                                         else "not a JSON list of {name, aliases, definition}")
                attempts.append({"piece": k, "grammar": grammar, "stop": stop, "ok": items is not None, "reason": reason})
                if items is not None:
                    break
            if progress is not None:
                progress(k + 1, len(pieces))
            for it in items or []:
                name = " ".join(it["name"].split()).strip("*").strip()
                definition = " ".join(it["definition"].split())
                if not name or not definition:
                    dropped.append(f"{name or '(empty name)'}: empty name or definition")
                    continue
                if name.casefold() in known:
                    continue
                if name.casefold() not in folded:
                    dropped.append(f"{name}: not found in the prompt")
                    continue
                aliases = []
                for a in it["aliases"]:
                    a = " ".join(a.split())
                    if a and a.casefold() not in known and a.casefold() != name.casefold() and a.casefold() in folded:
                        aliases.append(a)
                        known.add(a.casefold())
                known.add(name.casefold())
                entries.append(Entry(name, definition, aliases, "model"))
    return Draft(entries, attempts, dropped, len(pieces), total)


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(d: Draft, source_name: str, model_name: str | None) -> str:
    """The draft as a commented TOML term spec."""
    n_model = sum(e.origin == "model" for e in d.entries)
    lines = [
        f"# Term spec drafted by `aotcc analyze --draft-terms` from {source_name}.",
        "# A draft for a person to review: check every name, alias and definition before use.",
        f"# {len(d.entries) - n_model} entries come from glossary-shaped lines of the prompt (line number given);",
        f"# {n_model} were proposed by the model{f' ({model_name})' if model_name else ''}"
        + (" and are marked \"proposed by the model\"." if n_model else "."),
    ]
    if d.pieces_total > d.pieces:
        lines.append(f"# The model read the first {d.pieces} of {d.pieces_total} pieces of the prompt.")
    for a in d.attempts:
        if not a["ok"]:
            lines.append(f"# model answer for piece {a['piece'] + 1} was malformed ({a['reason']})"
                         + ("; retried with the JSON grammar" if not a["grammar"] else "; left out"))
    for r in d.dropped:
        lines.append(f"# left out a model proposal: {r}")
    lines.append("")
    for e in d.entries:
        note = f"from line {e.line}" if e.origin == "extracted" else "proposed by the model: review"
        lines.append(f"# {note}")
        lines.append("[[term]]")
        lines.append(f"name = {_q(e.name)}")
        if e.aliases:
            lines.append(f"aliases = [{', '.join(_q(a) for a in e.aliases)}]")
        lines.append(f"definition = {_q(e.definition)}")
        lines.append("")
    return "\n".join(lines)
