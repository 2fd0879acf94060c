"""Slow, obviously correct reference of detect -> plan -> rewrite (docs/semantics.md).

This module is the oracle the property tests compare the Rust core against. It works
in characters (Python `str` indices), tries every alias at every position, and follows
the wording of docs/semantics.md step by step; speed is not a goal. Segmentation and
chunking are not part of it: the caller passes the chunk spans taken from the artifact
under test.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

DEFAULT_OPTIONS = {"case_sensitive": False, "whole_word": True, "id_prefix": "SYS_STATE"}
TERM_KEYS = {"name", "definition", "aliases", "id", "requires", "case_sensitive", "whole_word"}

# Scripts written without spaces: every character is its own word.
NO_SPACE_RANGES = (
    (0x0E00, 0x0E7F),  # Thai
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # Han, extension A
    (0x4E00, 0x9FFF),  # Han
    (0xF900, 0xFAFF),  # Han compatibility
    (0x20000, 0x3FFFF),  # Han, supplementary planes
)


class ReferenceSpecError(ValueError):
    """The reference rejects the term spec (the core raises `SpecError`)."""


class ReferencePlanError(ValueError):
    """The reference cannot plan (the core raises `PlanError`)."""


# --- characters -------------------------------------------------------------------


def in_no_space_script(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in NO_SPACE_RANGES)


def is_word_char(ch: str) -> bool:
    """L*, M*, N* or Pc, except the no-space scripts (each such character is a word
    of its own, so it never glues to a neighbour: a boundary is on both its sides)."""
    if in_no_space_script(ch):
        return False
    category = unicodedata.category(ch)
    return category[0] in ("L", "M", "N") or category == "Pc"


def fold_char(ch: str) -> str:
    """Lowercase when that is one character of the same UTF-8 length, else itself."""
    lower = ch.lower()
    if len(lower) == 1 and len(lower.encode("utf-8")) == len(ch.encode("utf-8")):
        return lower
    return ch


def fold(text: str) -> str:
    return "".join(fold_char(ch) for ch in text)


# --- spec ---------------------------------------------------------------------------


@dataclass
class Term:
    index: int
    name: str
    definition: str
    aliases: list[str]
    explicit_id: str | None
    requires: list[str]
    case_sensitive: bool
    whole_word: bool


@dataclass
class Spec:
    terms: list[Term]
    id_prefix: str

    def index_of(self, name: str) -> int:
        for term in self.terms:
            if term.name == name:
                return term.index
        raise KeyError(name)


def _term_label(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]:
        return f'term "{raw["name"]}"'
    return f"term #{index}"


def parse_spec(spec: dict, check_cycles: bool = True) -> Spec:
    """Validate a normalized spec dict `{"options": {...}, "terms": [...]}`."""
    options = dict(DEFAULT_OPTIONS)
    options.update(spec.get("options") or {})
    id_prefix = options["id_prefix"]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", id_prefix):
        raise ReferenceSpecError(f"bad id_prefix {id_prefix!r}")

    raw_terms = spec.get("terms", spec.get("term", []))
    terms: list[Term] = []
    for index, raw in enumerate(raw_terms):
        label = _term_label(raw, index)
        if not isinstance(raw, dict):
            raise ReferenceSpecError(f"{label}: not a table")
        for key in raw:
            if key not in TERM_KEYS:
                raise ReferenceSpecError(f"{label}: unknown key {key!r}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ReferenceSpecError(f"{label}: missing name")
        definition = raw.get("definition")
        if not isinstance(definition, str) or not definition.strip():
            raise ReferenceSpecError(f"{label}: missing definition")
        aliases: list[str] = []
        for alias in [name, *raw.get("aliases", [])]:
            if alias == "" or not alias.strip():
                raise ReferenceSpecError(f"{label}: alias is empty")
            if "\n" in alias or "\r" in alias:
                raise ReferenceSpecError(f"{label}: alias has a line break")
            if alias != alias.strip():
                raise ReferenceSpecError(f"{label}: alias has leading or trailing white space")
            if alias not in aliases:
                aliases.append(alias)
        explicit_id = raw.get("id")
        if explicit_id is not None:
            if not re.fullmatch(r"[A-Z0-9_]+", explicit_id) or "__" in explicit_id:
                raise ReferenceSpecError(f"{label}: bad id {explicit_id!r}")
        terms.append(
            Term(
                index=index,
                name=name,
                definition=definition,
                aliases=aliases,
                explicit_id=explicit_id,
                requires=list(raw.get("requires", [])),
                case_sensitive=raw.get("case_sensitive", options["case_sensitive"]),
                whole_word=raw.get("whole_word", options["whole_word"]),
            )
        )

    names = [term.name for term in terms]
    for term in terms:
        if names.count(term.name) > 1:
            raise ReferenceSpecError(f'term "{term.name}": duplicate name')
    ids = [term.explicit_id for term in terms if term.explicit_id is not None]
    for term in terms:
        if term.explicit_id is not None and ids.count(term.explicit_id) > 1:
            raise ReferenceSpecError(f'term "{term.name}": duplicate id')
    for a in terms:
        for b in terms:
            if b.index <= a.index:
                continue
            either_insensitive = not a.case_sensitive or not b.case_sensitive
            for alias_a in a.aliases:
                for alias_b in b.aliases:
                    same = (
                        fold(alias_a) == fold(alias_b) if either_insensitive else alias_a == alias_b
                    )
                    if same:
                        raise ReferenceSpecError(
                            f'alias "{alias_b}" claimed by term "{a.name}" and term "{b.name}"'
                        )
    for term in terms:
        for required in term.requires:
            if required not in names:
                raise ReferenceSpecError(f'term "{term.name}": requires unknown term "{required}"')

    parsed = Spec(terms=terms, id_prefix=id_prefix)
    if check_cycles:
        _check_requires_cycles(parsed)
    return parsed


def find_requires_cycle(terms: list[tuple[str, list[str]]]) -> list[str] | None:
    """The first cycle made of `requires` edges alone, as names (`[A, B, A]`), searching
    depth-first from each term in spec order; unknown names and a term requiring itself
    are not edges ("T itself excluded")."""
    names = [name for name, _ in terms]
    finished: set[int] = set()

    def visit(index: int, path: list[int]) -> list[int] | None:
        if index in path:
            return path[path.index(index) :] + [index]
        if index in finished:
            return None
        for required in terms[index][1]:
            if required in names and names.index(required) != index:
                cycle = visit(names.index(required), path + [index])
                if cycle:
                    return cycle
        finished.add(index)
        return None

    for index in range(len(terms)):
        cycle = visit(index, [])
        if cycle:
            return [names[i] for i in cycle]
    return None


def _check_requires_cycles(spec: Spec) -> None:
    """A cycle made of `requires` edges alone is an error, printed `A -> B -> A`."""
    cycle = find_requires_cycle([(term.name, term.requires) for term in spec.terms])
    if cycle:
        raise ReferencePlanError(f"requires cycle: {' -> '.join(cycle)}")


# --- detect -------------------------------------------------------------------------


def alias_matches(text: str, start: int, alias: str, term: Term) -> bool:
    """Does `alias` of `term` match `text` at `start`, boundary checks included?"""
    end = start + len(alias)
    if end > len(text):
        return False
    piece = text[start:end]
    if term.case_sensitive:
        if piece != alias:
            return False
    elif fold(piece) != fold(alias):
        return False
    if term.whole_word:
        left_ok = start == 0 or not is_word_char(text[start - 1]) or not is_word_char(piece[0])
        right_ok = end == len(text) or not is_word_char(text[end]) or not is_word_char(piece[-1])
        if not (left_ok and right_ok):
            return False
    return True


def detect(text: str, spec: Spec, file_starts: tuple[int, ...] = ()) -> list[tuple[int, int, int]]:
    """Leftmost-longest valid matches: `(start, end, term_index)`, in characters.
    `file_starts` are the offsets where a concatenated file begins; no match crosses one."""
    occurrences = []
    position = 0
    while position < len(text):
        best = None  # (end, term_index)
        for term in spec.terms:
            for alias in term.aliases:
                end = position + len(alias)
                if any(position < b < end for b in file_starts):
                    continue
                if alias_matches(text, position, alias, term):
                    if best is None or end > best[0]:
                        best = (end, term.index)
        if best is None:
            position += 1
        else:
            occurrences.append((position, best[0], best[1]))
            position = best[0]
    return occurrences


# --- plan ---------------------------------------------------------------------------


def dependencies(spec: Spec) -> dict[int, list[tuple[int, str]]]:
    """Per term: its `requires` in order, then terms found in its definition in order
    of first occurrence there; itself excluded, each once. Edges are tagged with their
    origin ("requires" or "definition")."""
    deps: dict[int, list[tuple[int, str]]] = {}
    for term in spec.terms:
        edges: list[tuple[int, str]] = []
        seen = {term.index}
        for required in term.requires:
            target = spec.index_of(required)
            if target not in seen:
                seen.add(target)
                edges.append((target, "requires"))
        for _, _, target in detect(term.definition, spec):
            if target not in seen:
                seen.add(target)
                edges.append((target, "definition"))
        deps[term.index] = edges
    return deps


class _Restart(Exception):
    """A `requires` edge closed a cycle: `edge` (a definition edge on it) is removed."""

    def __init__(self, edge: tuple[int, int]) -> None:
        self.edge = edge


def _dfs(spec: Spec, deps: dict[int, list[tuple[int, str]]], removed: list[tuple[int, int]]):
    kept: dict[int, list[int]] = {term.index: [] for term in spec.terms}
    dropped: list[tuple[int, int]] = []
    visited: set[int] = set()
    path: list[tuple[int, int, str]] = []  # (from, to, origin) edges taken

    def visit(index: int) -> None:
        visited.add(index)
        for target, origin in deps[index]:
            if (index, target) in removed:
                continue
            on_path = [e[0] for e in path] + [index]
            if target in on_path:
                if origin == "requires":
                    cycle = path[on_path.index(target):]
                    last = [e for e in cycle if e[2] == "definition"][-1]
                    raise _Restart((last[0], last[1]))
                dropped.append((index, target))
                continue
            kept[index].append(target)
            if target not in visited:
                path.append((index, target, origin))
                visit(target)
                path.pop()

    for term in spec.terms:
        if term.index not in visited:
            visit(term.index)
    return kept, dropped


def break_cycles(
    spec: Spec, deps: dict[int, list[tuple[int, str]]]
) -> tuple[dict[int, list[int]], list[tuple[int, int]]]:
    """Depth-first from each term in spec order; a definition edge back to a term on
    the current path is dropped. A `requires` edge back onto the path closes a cycle
    that holds a definition edge (requires alone are acyclic): the last such edge on the
    path is removed for good and the search starts over. Returns the kept edges and the
    dropped ones (removed ones first)."""
    removed: list[tuple[int, int]] = []
    while True:
        try:
            kept, dropped = _dfs(spec, deps, removed)
        except _Restart as r:
            removed.append(r.edge)
            continue
        return kept, removed + dropped


def labels():
    """A, B, ..., Z, AA, AB, ..., AZ, BA, ..."""
    n = 1
    while True:
        label = ""
        k = n
        while k > 0:
            k, rem = divmod(k - 1, 26)
            label = chr(ord("A") + rem) + label
        yield label
        n += 1


def tag_of(spec: Spec, tag_id: str, style: str = "seed") -> str:
    """The element name of a tag id: `__{id_prefix}_{id}__` (seed) or the id (short)."""
    return f"__{spec.id_prefix}_{tag_id}__" if style == "seed" else tag_id


def reference_of(element: str, style: str = "seed") -> str:
    return f"<{element} />" if style == "seed" else f"<{element}/>"


def element_at(element: str, haystack: str, style: str = "seed") -> int:
    """Where `haystack` already spells `element` in this style, or -1: seed, anywhere as
    text; short, as a tag's name (`<NAME` or `</NAME` not followed by another XML name
    character or a non-ASCII character)."""
    if style == "seed":
        return haystack.find(element)
    m = re.search(r"</?" + re.escape(element) + r"(?![A-Za-z0-9_.:\-]|[^\x00-\x7f])", haystack)
    return -1 if m is None else m.start()


@dataclass
class TermInfo:
    first_chunk: int
    tag_id: str
    tag: str
    later_references: int


@dataclass
class Result:
    compiled: str
    occurrences: list[tuple[int, int, int]]
    injection_order: list[int]
    terms: dict[int, TermInfo] = field(default_factory=dict)
    dropped_edges: list[tuple[int, int]] = field(default_factory=list)


def chunk_of(position: int, chunks: list[tuple[int, int]]) -> int:
    for number, (start, end) in enumerate(chunks):
        if start <= position < end:
            return number
    raise ValueError(f"position {position} is in no chunk")


def xml_escape_name(name: str) -> str:
    return (
        name.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def compile_reference(
    text: str,
    spec_dict: dict,
    chunks: list[tuple[int, int]],
    placement: str = "chunk",
    references: str = "tag",
    file_starts: tuple[int, ...] = (),
    tag_style: str = "seed",
) -> Result:
    """Detect, plan and rewrite `text` as docs/semantics.md states. `text` is the
    concatenation of the source files; `file_starts` holds where files 2, 3, ... begin."""
    assert placement in ("chunk", "top")
    assert references in ("tag", "annotate", "keep")
    spec = parse_spec(spec_dict)
    chunks = [(int(s), int(e)) for s, e in chunks]

    occurrences = detect(text, spec, tuple(file_starts))

    # First occurrence of each term.
    first_occurrence: dict[int, tuple[int, int, int]] = {}
    for occurrence in occurrences:
        first_occurrence.setdefault(occurrence[2], occurrence)

    kept, dropped = break_cycles(spec, dependencies(spec))

    # Injection order: chunk by chunk, terms by first-occurrence offset, dependencies
    # depth-first in post-order before the term.
    injection_order: list[int] = []
    first_appearance: dict[int, int] = {}

    def emit(index: int, chunk_number: int) -> None:
        if index in first_appearance:
            return
        for target in kept[index]:
            emit(target, chunk_number)
        if index not in first_appearance:
            first_appearance[index] = chunk_number
            injection_order.append(index)

    for chunk_number, (_start, _end) in enumerate(chunks):
        starting_here = sorted(
            (occ[0], index)
            for index, occ in first_occurrence.items()
            if chunk_of(occ[0], chunks) == chunk_number
        )
        for _, index in starting_here:
            emit(index, chunk_number)

    # Tag ids in injection order. Only injected terms get a tag, so only their
    # explicit ids are checked against the source and the definitions.
    explicit_ids = {term.explicit_id for term in spec.terms if term.explicit_id is not None}
    haystacks = [text] + [term.definition for term in spec.terms]
    for index in injection_order:
        term = spec.terms[index]
        if term.explicit_id is None:
            continue
        if tag_style == "short" and not term.explicit_id[0].isalpha():
            raise ReferencePlanError(f'term "{term.name}": id {term.explicit_id} cannot name an element')
        tag = tag_of(spec, term.explicit_id, tag_style)
        for haystack in haystacks:
            at = element_at(tag, haystack, tag_style)
            if at >= 0:
                raise ReferencePlanError(
                    f'term "{term.name}": tag {tag} occurs at byte {len(haystack[:at].encode())}'
                )
    label_source = labels()
    tag_ids: dict[int, str] = {}
    for index in injection_order:
        term = spec.terms[index]
        if term.explicit_id is not None:
            tag_ids[index] = term.explicit_id
            continue
        while True:
            label = next(label_source)
            if label in explicit_ids:
                continue
            if any(element_at(tag_of(spec, label, tag_style), h, tag_style) >= 0 for h in haystacks):
                continue
            break
        tag_ids[index] = label

    # Rewrite.
    def definition_block(index: int) -> str:
        term = spec.terms[index]
        tag = tag_of(spec, tag_ids[index], tag_style)
        return f'<{tag} term="{xml_escape_name(term.name)}">{term.definition}</{tag}>\n'

    first_starts = {occ[0] for occ in first_occurrence.values()}
    pieces: list[str] = []
    if placement == "top":
        pieces.extend(definition_block(index) for index in injection_order)
    position = 0  # source text before `position` has been written out
    for chunk_number, (start, end) in enumerate(chunks):
        if placement == "chunk":
            pieces.extend(
                definition_block(index)
                for index in injection_order
                if first_appearance[index] == chunk_number
            )
        position = max(position, start)
        for occ_start, occ_end, index in occurrences:
            if not (start <= occ_start < end):
                continue
            pieces.append(text[position:occ_start])
            written = text[occ_start:occ_end]
            reference_tag = reference_of(tag_of(spec, tag_ids[index], tag_style), tag_style)
            if occ_start in first_starts or references == "keep":
                pieces.append(written)
            elif references == "tag":
                pieces.append(reference_tag)
            else:
                pieces.append(written + reference_tag)
            position = occ_end
        # An occurrence never crosses a chunk boundary; if one did anyway, it is
        # written whole in the chunk where it starts (the property tests flag it).
        if position < end:
            pieces.append(text[position:end])
            position = end

    result = Result(
        compiled="".join(pieces),
        occurrences=occurrences,
        injection_order=injection_order,
        dropped_edges=dropped,
    )
    for index in injection_order:
        count = sum(1 for occ in occurrences if occ[2] == index)
        result.terms[index] = TermInfo(
            first_chunk=first_appearance[index],
            tag_id=tag_ids[index],
            tag=tag_of(spec, tag_ids[index], tag_style),
            later_references=max(count - 1, 0),
        )
    return result


# --- segment and chunk -----------------------------------------------------------------
# An independent reading of docs/semantics.md "Chunk" and the segmenter it names, so the
# core's chunk boundaries are checked against something other than themselves. White
# space here is ASCII white space (space, tab, LF, FF, CR), as the segmenter defines it.

ASCII_WS = " \t\n\x0c\r"
HEADING, PARAGRAPH, LIST_ITEM, CODE, SENTENCE = "heading", "paragraph", "list_item", "code", "sentence"
UNIT_LEVEL = {HEADING: 3, PARAGRAPH: 2, LIST_ITEM: 2, CODE: 2, SENTENCE: 1}
_HEADING_RE = re.compile(r" {0,3}#{1,6}(?:[ \t\n\x0c\r]|$)")
_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_RE = re.compile(r"[ \t]*(?:[-*+][ \t]|[0-9]{1,9}[.)](?:[ \t\n\x0c\r]|$))")
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]*_]*(?=[ \t\n\x0c\r])|[\u3002\uff01\uff1f]")


def _blank(s: str) -> bool:
    return all(c in ASCII_WS for c in s)


def _sentence_cuts(text: str, start: int, end: int) -> list[int]:
    """A sentence ends after `.`, `!` or `?` (and closing quotes or brackets) followed by
    white space, or after a CJK full stop, when the next non-space character is not
    lowercase; the cut is after the white space."""
    cuts = []
    pos = start
    while True:
        m = _SENTENCE_END_RE.search(text, pos, end)
        if m is None:
            return cuts
        j = m.end()
        while j < end and text[j] in ASCII_WS:
            j += 1
        if j < end and not text[j].islower():
            cuts.append(j)
        pos = max(j, m.start() + 1)


def segment(text: str, file_starts: tuple[int, ...] = ()) -> list[tuple[int, int, str]]:
    """Units `(start, end, kind)` tiling `text`: ATX headings, fenced code blocks (kept
    whole; a closing fence is as long or longer and alone on its line), list items,
    blank-line paragraphs, and the later sentences of paragraphs and list items. Leading
    blank lines belong to the first block; no unit spans a file start."""
    blocks: list[tuple[int, int, str]] = []
    current: tuple[int, str] | None = None
    after_blank = False
    fence: tuple[str, int] | None = None
    starts = sorted(s for s in file_starts if s > 0)
    nxt = 0
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        line_end = n if nl < 0 else nl + 1
        file_break = nxt < len(starts) and starts[nxt] <= pos
        while nxt < len(starts) and starts[nxt] <= pos:
            nxt += 1
        if file_break:
            fence = None
        if nxt < len(starts) and starts[nxt] < line_end:
            line_end = starts[nxt]
        line = text[pos:line_end]
        kind = None
        if fence is not None:
            m = _FENCE_RE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= fence[1] and _blank(line[m.end():]):
                fence = None
        elif _blank(line) and not file_break:
            after_blank = True
        elif (m := _FENCE_RE.match(line)) is not None:
            fence = (m.group(1)[0], len(m.group(1)))
            kind = CODE
        elif _HEADING_RE.match(line):
            kind = HEADING
        elif _LIST_RE.match(line):
            kind = LIST_ITEM
        elif file_break or after_blank or current is None or current[1] in (HEADING, CODE):
            kind = PARAGRAPH
        if kind is not None:
            start = 0 if current is None else pos
            if current is not None:
                blocks.append((current[0], pos, current[1]))
            current = (start, kind)
            after_blank = False
        pos = line_end
    if current is not None:
        blocks.append((current[0], n, current[1]))
    elif n:
        blocks.append((0, n, PARAGRAPH))
    units = []
    for start, end, kind in blocks:
        if kind in (HEADING, CODE):
            units.append((start, end, kind))
            continue
        s = start
        for cut in [*_sentence_cuts(text, start, end), end]:
            if cut > s:
                units.append((s, cut, kind if s == start else SENTENCE))
                s = cut
    return units


def chunk(
    text: str,
    units: list[tuple[int, int, str]],
    occurrences: list[tuple[int, int]],
    budget: int,
    count,
) -> list[tuple[int, int, int]]:
    """Chunks `(start, end, tokens)`: units packed up to `budget` tokens (`count(str)`).

    1. Units joined by an occurrence that spans their boundary become one piece.
    2. A piece over the budget (not code) is split into words (a word and its trailing
       white space), never inside an occurrence; only the first word keeps the unit's
       boundary strength (heading 3, block 2, sentence 1, inside a unit 0).
    3. Pieces are added while the open chunk stays within the budget. When the next
       piece does not fit, the chunk is cut before the strongest piece among those that
       leave it at least half full (the latest on a tie; before the piece that did not
       fit when nothing is stronger), and a heading at the end moves to the next chunk.
    """
    pieces: list[list] = []  # [start, end, tokens, level, splittable]
    for start, end, kind in units:
        tokens = count(text[start:end])
        joined = any(s < start < e for s, e in occurrences)
        if joined and pieces:
            last = pieces[-1]
            last[1], last[2] = end, last[2] + tokens
            last[4] = last[4] and kind != CODE
        else:
            pieces.append([start, end, tokens, UNIT_LEVEL[kind], kind != CODE])
    split: list[list] = []
    for p in pieces:
        if not (p[4] and p[2] > budget):
            split.append(p)
            continue
        s, i = p[0], p[0]
        first = True
        while i < p[1]:
            while i < p[1] and text[i] not in ASCII_WS:
                i += 1
            while i < p[1] and text[i] in ASCII_WS:
                i += 1
            if i < p[1] and any(a < i < b for a, b in occurrences):
                continue
            split.append([s, i, count(text[s:i]), p[3] if first else 0, False])
            first = False
            s = i
    chunks: list[tuple[int, int, int]] = []
    first, i = 0, 0
    while i < len(split):
        open_tokens = sum(q[2] for q in split[first:i])
        if i > first and open_tokens + split[i][2] > budget:
            best = i
            best_level = split[i][3]
            for j in range(i - 1, first, -1):
                if sum(q[2] for q in split[first:j]) * 2 < budget:
                    break
                if split[j][3] > best_level:
                    best, best_level = j, split[j][3]
            while best > first + 1 and split[best - 1][3] == 3:
                best -= 1
            chunks.append((split[first][0], split[best - 1][1], sum(q[2] for q in split[first:best])))
            first = best
            continue
        i += 1
    if first < len(split):
        chunks.append((split[first][0], split[-1][1], sum(q[2] for q in split[first:])))
    return chunks
