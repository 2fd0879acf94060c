"""Drafting a term spec from a prompt that has a glossary or definitions in prose, for a
person to review.

Three sources, merged:

- an extractor of glossary-shaped lines (`**Term**: definition`, `Term — definition`,
  `Term means …`, with `Term (ALIAS)` giving an alias);
- a miner of the prompt's own vocabulary: capitalised multi-word names ("Cooling-Off
  Period", "Tier 2 Escalation") and acronyms that recur, each with the sentence that
  introduces it as its definition (a sentence where it is the subject of "is", "means",
  …, else the first that names it);
- the model, asked for the terms a short piece of the prompt defines, decoded under a
  GBNF grammar from the first token (a 270M model's free answer was malformed on every
  piece of a real prompt), kept only when the name occurs in the prompt, and marked in
  the TOML as proposed by the model.

Every candidate passes a common-word filter: a single word that is one token of the
model's vocabulary (" nurse", " routine") is frequent English, not a term. Acronyms and
names of several words pass. The draft is checked with the spec loader and the core
before it is written (atomically).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aotcc.analyze.cache import Cache, key_of
from aotcc.analyze.engine import Engine

VERSION = "draft-v2"
MAX_TERMS = 4
MAX_NEW_TOKENS = 200
#: source tokens per drafting piece: a small model loses track in long pieces
PIECE_TOKENS = 200
MAX_PIECES = 12

GRAMMAR = r"""
root  ::= "[" ws ( item ( "," ws item ){0,3} )? ws "]"
item  ::= "{" ws "\"name\":" ws name "," ws "\"definition\":" ws long ws "}"
name  ::= "\"" [A-Z] [^"\\\x00-\x1f]{1,40} "\""
long  ::= "\"" [^"\\\x00-\x1f]{8,160} "\""
ws    ::= [ \n]{0,2}
"""

_ASK = (
    "Below is part of a document. Which special terms does it define? A special term is a name "
    "that the document gives to one of its own policies, products, plans, roles, states or "
    "procedures, usually a name of two or three words written with capital letters. Do not "
    "list ordinary words. For each term give the sentence of the text that defines it. Answer with "
    "a JSON list of objects with the keys \"name\" and \"definition\"; answer [] if there is none.\n\n"
    "Text:\n{text}"
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
    origin: str = "extracted"  # or "mined" or "model"
    line: int | None = None


@dataclass
class Draft:
    entries: list[Entry]
    attempts: list[dict[str, Any]]  # per model call: piece, grammar, stop, ok, reason
    dropped: list[str]  # model proposals left out, with the reason
    pieces: int
    pieces_total: int
    proposals: list[Entry] = field(default_factory=list)  # every well-formed model proposal, before the merge

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
            name = m.group("name").strip().strip("*").strip().rstrip(".:").strip()
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
            if not name or len(name) > 80 or "," in name or len(name.split()) > 6 or not definition \
                    or len(definition.split()) < 2:
                continue
            if name.casefold() in seen:
                break
            seen.add(name.casefold())
            out.append(Entry(name, definition, aliases, "extracted", lineno))
            break
    return out


# --- the common-word filter ---------------------------------------------------------

#: used only when no model vocabulary is at hand (`--no-model-draft` without a GGUF):
#: labels that glossary-shaped bullets commonly carry and are never terms on their own
FALLBACK_COMMON = frozenset("""
note notes important example examples tip tips warning warnings step steps summary overview details
yes no long short routine urgent normal high low medium new old other general default standard
nurse doctor patient staff customer customers agent agents user users team manager admin
morning evening night day days week weeks month months year today time date name email phone
always never sometimes required optional before after first second third last next final
""".split())


def counter_of(tokenize: Callable[[str], Any]) -> Callable[[str], int]:
    """A token counter (`count(text) -> tokens`) from a tokenizer returning a list."""
    return lambda t: len(tokenize(t))


def is_common(name: str, count: Callable[[str], int] | None) -> bool:
    """Whether `name` is a common word rather than a term.

    A term of several words is never common. A single word is common when the model's
    vocabulary holds it (lower-cased, after a space) as one token: a SentencePiece or BPE
    vocabulary keeps whole words as single tokens only when they are frequent in its
    training text, so one token is a good, language-agnostic proxy for "an everyday
    word" ("nurse", "routine", "long"), while coined names ("Chargeback", "Relay+") take
    several. Acronyms of three letters or more (RMA, DHR) and words with a capital inside
    or a digit (FirmwareRing, G3, Resolved-Monitoring) are names, not common words.
    Without a vocabulary (`count` None), a small built-in list decides."""
    words = name.split()
    if len(words) != 1:
        return False
    w = words[0].strip(".,:;!?*\"'()[]")
    if not w:
        return True
    if w.isupper() and len(w) >= 3 or any(c.isdigit() for c in w) or any(c.isupper() for c in w[1:]):
        return False
    if count is None:
        return w.casefold() in FALLBACK_COMMON
    return all(count(" " + part.lower()) == 1 for part in w.split("-") if part)


# --- the miner ---------------------------------------------------------------------

_CAP = r"(?:[A-Z][a-z]+(?:-[A-Z][a-z]+)*|[A-Z]{2,5}|\d{1,2})"
_PHRASE = re.compile(rf"(?<![\w-])(?:{_CAP}|[A-Z][a-z]+)(?: {_CAP}){{1,3}}(?![\w-])")
_HYPHENED = re.compile(r"(?<![\w-])[A-Z][a-z]+(?:-[A-Z][a-z]+)+(?![\w-])")
_ACRONYM = re.compile(r"(?<![\w-])[A-Z]{3,5}s?(?![\w-])")
#: words that open a sentence and are not part of a name
_LEAD = frozenset("""
a an the this that these those every each any all some no not if when while where whether for in on at
by to of from with our your its their his her do does never always only once after before during under
over until unless as and or but so then also use ask move flag log see read write tell give send open
""".split())
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?](?=\s|$))?")
_DEFINING = r"(?:is|are|means|refers to|is defined as|is called|covers|applies)\b"


def _strip_lead(phrase: str) -> str:
    words = phrase.split(" ")
    while words and words[0].casefold() in _LEAD:
        words = words[1:]
    while words and words[-1].isdigit():
        words = words[:-1]
    return " ".join(words)


def mine(text: str, *, count: Callable[[str], int] | None = None, min_uses: int = 2) -> list[Entry]:
    """Names the prompt keeps using: capitalised phrases of 2-4 words, capitalised
    hyphenated words and acronyms that occur at least `min_uses` times (outside code and
    headings' numbering), most used first. Each gets, as its definition, the sentence
    that introduces it (one where it is followed by "is", "means", …, else the first
    that names it). A plural that also occurs in the singular becomes its alias."""
    fenced = re.sub(r"```.*?```", " ", text, flags=re.S)
    lines = [ln for ln in fenced.splitlines() if not ln.lstrip().startswith("#")]
    readable = "\n".join(lines)  # definitions keep inline code
    prose = re.sub(r"`[^`\n]*`", " ", readable)  # names are not mined from it
    uses: dict[str, int] = {}
    for pat in (_PHRASE, _HYPHENED, _ACRONYM):
        for m in pat.finditer(prose):
            name = _strip_lead(m.group(0))
            if name and (" " in name or pat is not _PHRASE):
                uses[name] = uses.get(name, 0) + 1
    # a name seen only inside a longer one ("Cooling-Off" in "Cooling-Off Period") is not a name of its own
    spans = {n: [m.span() for m in re.finditer(rf"(?<![\w-]){re.escape(n)}(?![\w-])", prose)] for n in uses}
    for name in list(uses):
        longer = [sp for other in uses if other != name and name in other for sp in spans[other]]
        alone = [sp for sp in spans[name] if not any(a <= sp[0] and sp[1] <= b for a, b in longer)]
        if len(alone) < min_uses:
            del uses[name]
    # plurals fold into their singular
    merged: dict[str, tuple[int, list[str]]] = {}
    for name, n in sorted(uses.items()):
        single = name[:-1] if name.endswith("s") and name[:-1] in uses else None
        if single is not None:
            got = merged.get(single, (uses[single], []))
            merged[single] = (got[0] + n, got[1] + [name])
        elif name not in merged:
            merged[name] = (n, [])
    sentences = [m.group(0).strip(" -*\t") for m in _SENTENCE.finditer(readable)]
    out: list[Entry] = []
    taken: set[str] = set()
    for name, (n, aliases) in sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0])):
        if n < min_uses or is_common(name, count) or name.casefold() in taken:
            continue
        pat = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
        defining = re.compile(rf"(?<![\w-]){re.escape(name)}s?\*{{0,2}}\.?\*{{0,2}}[:,]? (?:\w+ ){{0,2}}{_DEFINING}")
        opening = re.compile(rf"^(?:\*\*)?(?:(?:An?|The) )?{re.escape(name)}")
        named = [x for x in sentences if pat.search(x)]
        definition = next((x for x in named if opening.match(x) and defining.search(x)),
                          next((x for x in named if defining.search(x)), named[0] if named else ""))
        definition = " ".join(definition.replace("**", "").split())
        if len(definition.split()) < 3:
            continue
        if len(definition) > 300:
            definition = definition[:299].rsplit(" ", 1)[0] + "…"
        taken.add(name.casefold())
        out.append(Entry(name, definition, [a for a in aliases if a.casefold() not in taken], "mined"))
        taken.update(a.casefold() for a in aliases)
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


def _ask(engine: Engine, cache: Cache, piece: str) -> tuple[str, str]:
    """The model's answer for one piece, decoded under the grammar from the first token."""
    prompt = engine.chat(_ASK.format(text=piece.strip()))
    key = key_of("draft", version=VERSION, settings=engine.settings, prompt=prompt, grammar=GRAMMAR,
                 max_tokens=MAX_NEW_TOKENS)

    def compute() -> list[str]:
        text, stop = engine.generate(prompt, max_tokens=MAX_NEW_TOKENS, grammar=GRAMMAR)
        return [text, stop]

    text, stop = cache.through("draft", key, compute)
    return text, stop


def draft(engine: Engine | None, cache: Cache, text: str, *, use_model: bool = True, mine_names: bool = True,
          count: Callable[[str], int] | None = None, progress: Callable[[int, int], None] | None = None) -> Draft:
    """Extracted, mined and model-proposed entries (see the module docstring). `count`
    counts a text's tokens for the common-word filter (default: the engine's model;
    without either, a small built-in list)."""
    if count is None and engine is not None:
        count = counter_of(engine.tokenize)
    dropped: list[str] = []
    entries: list[Entry] = []
    known: set[str] = set()

    def add(e: Entry) -> None:
        if is_common(e.name, count):
            dropped.append(f"{e.name}: a common word")
            return
        if e.name.casefold() in known:
            return
        e.aliases = [a for a in e.aliases if a.casefold() not in known and a.casefold() != e.name.casefold()]
        known.add(e.name.casefold())
        known.update(a.casefold() for a in e.aliases)
        entries.append(e)

    for e in extract(text):
        add(e)
    if mine_names:
        for e in mine(text, count=count):
            add(e)
    folded = text.casefold()
    attempts: list[dict[str, Any]] = []
    proposals: list[Entry] = []
    pieces: list[str] = []
    total = 0
    if use_model and engine is not None:
        pieces = _pieces(engine, text)
        total = len(pieces)
        pieces = pieces[:MAX_PIECES]
        for k, piece in enumerate(pieces):
            answer, stop = _ask(engine, cache, piece)
            items = parse_answer(answer)
            reason = "ok" if items is not None else (f"stopped at {stop} before the JSON closed" if stop == "length"
                                                     else "not a JSON list of {name, definition}")
            attempts.append({"piece": k, "grammar": True, "stop": stop, "ok": items is not None, "reason": reason})
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
                aliases = [" ".join(a.split()) for a in it["aliases"]]
                proposals.append(Entry(name, definition, [a for a in aliases if a and a.casefold() in folded], "model"))
                add(proposals[-1])
    return Draft(entries, attempts, dropped, len(pieces), total, proposals)


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(d: Draft, source_name: str, model_name: str | None) -> str:
    """The draft as a commented TOML term spec."""
    n_model = sum(e.origin == "model" for e in d.entries)
    n_mined = sum(e.origin == "mined" for e in d.entries)
    lines = [
        f"# Term spec drafted by `aotcc analyze --draft-terms` from {source_name}.",
        "# A draft for a person to review: check every name, alias and definition before use.",
        f"# {len(d.entries) - n_model - n_mined} entries come from glossary-shaped lines of the prompt (line number given);",
        f"# {n_mined} are names the prompt keeps using, defined by the sentence that introduces them;",
        f"# {n_model} were proposed by the model{f' ({model_name})' if model_name else ''}"
        + (" and are marked \"proposed by the model\"." if n_model else "."),
    ]
    if d.pieces_total > d.pieces:
        lines.append(f"# The model read the first {d.pieces} of {d.pieces_total} pieces of the prompt.")
    for a in d.attempts:
        if not a["ok"]:
            lines.append(f"# model answer for piece {a['piece'] + 1} was malformed ({a['reason']}); left out")
    for r in d.dropped:
        lines.append(f"# left out: {r}")
    lines.append("")
    for e in d.entries:
        note = {"extracted": f"from line {e.line}", "mined": "a name the prompt keeps using: review the definition"}.get(
            e.origin, "proposed by the model: review")
        lines.append(f"# {note}")
        lines.append("[[term]]")
        lines.append(f"name = {_q(e.name)}")
        if e.aliases:
            lines.append(f"aliases = [{', '.join(_q(a) for a in e.aliases)}]")
        lines.append(f"definition = {_q(e.definition)}")
        lines.append("")
    return "\n".join(lines)
