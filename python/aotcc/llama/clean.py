"""Answers read clean: model output shown to a user has term names where the model
wrote reference tags, and ends where the model starts a turn of its own.

A model that read a compiled prompt sometimes answers with a reference tag
(`<__SYS_STATE_L__ />`, `<L/>`), or half of a definition block. `TagMap` knows every
tag's term; `Cleaner` rewrites a stream of generated text piece by piece:

- a reference tag becomes the term's name, an opening tag `Name: `, a closing tag
  disappears, and an element in the seed's spelling that names no term
  (`<__SYS_STATE_ZZ__ />`) disappears too;
- text that may still become a tag (`<__SYS_ST` at the end of a piece) is held back
  until it resolves, so a tag split across tokens never shows;
- a stop sequence (`\\nQuestion:` by default for plain bundles) ends the answer, and
  text that may still become one is held back the same way.

The cleaner sees the whole raw text, so what it has shown is always a prefix of what it
would show for the finished answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aotcc.errors import InputError

if TYPE_CHECKING:
    from aotcc.compiled import Compiled

#: Where a plain (template-less) bundle's answer ends: the model starting a question
#: or a user turn of its own.
DEFAULT_STOPS = ("\nQuestion:", "\nUser:")
#: The longest text held back while it may still become a tag.
_MAX_PENDING_TAG = 160
_NAME = r"[A-Za-z_][A-Za-z0-9_.:\-]*"


@dataclass(frozen=True)
class TagMap:
    """The element name of each injected term's tag, and the term's name."""

    names: dict[str, str] = field(default_factory=dict)  # element -> term name
    style: str = "seed"
    id_prefix: str = "SYS_STATE"

    @classmethod
    def from_compiled(cls, compiled: Compiled) -> TagMap:
        opts = compiled.manifest.get("options", {})
        names = {t.tag: t.name for t in compiled.terms if t.tag}
        return cls(names, str(opts.get("tag_style") or "seed"), str(opts.get("id_prefix") or "SYS_STATE"))

    @classmethod
    def from_fields(cls, doc: Any) -> TagMap:
        """From the `prompt.tags` table a bundle stores (checked: a forged table gives an
        empty map, never an exception)."""
        if not isinstance(doc, dict):
            return cls()
        pairs = doc.get("names")
        names = {}
        if isinstance(pairs, list):
            for p in pairs:
                if isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p):
                    names[p[0]] = p[1]
        style = doc.get("style") if doc.get("style") in ("seed", "short") else "seed"
        prefix = doc.get("id_prefix") if isinstance(doc.get("id_prefix"), str) else "SYS_STATE"
        return cls(names, str(style), str(prefix))

    def to_fields(self) -> dict[str, Any]:
        return {"style": self.style, "id_prefix": self.id_prefix, "names": [[k, v] for k, v in sorted(self.names.items())]}

    # --- the rewrite ---------------------------------------------------------------

    @property
    def _seed(self) -> str:
        return f"__{re.escape(self.id_prefix)}_[A-Z0-9_]+?__"

    def _pattern(self) -> re.Pattern[str]:
        known = sorted(self.names, key=len, reverse=True)
        alts = [re.escape(k) for k in known]
        if self.style == "seed":
            alts.append(self._seed)
        if not alts:
            return re.compile(r"(?!x)x")
        el = "(?:" + "|".join(alts) + ")"
        # <EL ...>, <EL/>, <EL />, </EL>, with stray spaces; or a bare seed-style name
        tag = rf"<\s*(?P<close>/)?\s*(?P<el>{el})(?![A-Za-z0-9_.:\-])[^<>]*>"
        bare = rf"(?P<bare>{self._seed})" if self.style == "seed" else r"(?!x)x"
        return re.compile(f"{tag}|{bare}")

    def rewrite(self, text: str) -> tuple[str, int]:
        """`text` with every tag of this map replaced, and how many tags there were."""
        pat = self._pattern()
        count = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal count
            count += 1
            el = m.group("el") or m.group("bare")
            name = self.names.get(el, "")
            if m.group("close") or not name:
                return ""
            if m.group("el") and not m.group(0).rstrip(" >").endswith("/"):
                return f"{name}: "  # an opening tag: the model is writing a definition out
            return name

        return pat.sub(sub, text), count

    def _known(self, name: str, *, whole: bool) -> bool:
        """Whether `name` is (or, with `whole=False`, may still grow into) an element of
        this map, or of the seed's spelling."""
        head = f"__{self.id_prefix}_"
        seed_whole = self.style == "seed" and re.fullmatch(self._seed, name) is not None
        if whole:
            return name in self.names or seed_whole
        if any(k.startswith(name) for k in self.names):
            return True
        if self.style != "seed":
            return False
        return head.startswith(name) or (name.startswith(head) and re.fullmatch(r"[A-Z0-9_]*", name[len(head):]) is not None)

    def unfinished(self, tail: str) -> str:
        """What an answer that ends inside a tag (`tail`, from `pending_from`) shows."""
        m = re.match(r"<?\s*(/)?\s*([A-Za-z0-9_.:\-]*)", tail)
        name = m.group(2) if m else ""
        if m and not m.group(1) and self._known(name, whole=True):
            return self.names.get(name, "")
        return ""

    def pending_from(self, text: str) -> int:
        """Where an unfinished tag may start at the end of `text` (len(text) if none)."""
        lt = text.rfind("<")
        if lt >= 0 and ">" not in text[lt:] and len(text) - lt <= _MAX_PENDING_TAG:
            m = re.match(r"<\s*/?\s*([A-Za-z0-9_.:\-]*)(.*)", text[lt:], re.S)
            assert m is not None
            name, rest = m.group(1), m.group(2)
            if (not rest and self._known(name, whole=False)) or (
                    rest[:1].isspace() or rest[:1] == "/") and self._known(name, whole=True):
                return lt
        if self.style == "seed":
            # a bare name being spelled: `__SYS`, `__SYS_STATE_L_`
            m2 = re.search(r"_[A-Za-z0-9_]*\Z", text)
            if m2 and len(text) - m2.start() <= _MAX_PENDING_TAG and self._known(text[m2.start():], whole=False):
                return m2.start()
        return len(text)


class Cleaner:
    """Turns raw generated text, fed piece by piece, into what a user sees."""

    def __init__(self, tags: TagMap | None = None, stops: Sequence[str] = ()) -> None:
        self.tags = tags or TagMap()
        self.stops = tuple(stops)
        self.raw = ""
        self._shown = 0
        self.stopped: str | None = None  # the stop sequence that ended the answer
        self.text = ""  # what has been shown so far
        self.tag_count = 0

    def _render(self, final: bool) -> str:
        k = self.tags.pending_from(self.raw)
        clean, self.tag_count = self.tags.rewrite(self.raw[:k])
        if final and k < len(self.raw):
            # the answer ended inside a tag (max_tokens): its name if it got that far, else nothing
            clean += self.tags.unfinished(self.raw[k:])
            self.tag_count += 1
        hold = 0
        cut = min((i for i in (clean.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = next(s for s in self.stops if clean.find(s) == cut)
            clean = clean[:cut]
        if cut >= 0 or final:
            # the answer is complete: the blank lines before a stop sequence are not part of it
            clean = clean.rstrip()
        else:
            hold = max((n for s in self.stops for n in range(len(s) - 1, 0, -1) if clean.endswith(s[:n])), default=0)
            # trailing whitespace (before what may be a stop sequence) waits for the text that
            # follows it, or is dropped at the end
            kept = clean[: len(clean) - hold]
            hold += len(kept) - len(kept.rstrip())
        visible = clean[: len(clean) - hold]
        new = visible[len(self.text):] if visible.startswith(self.text) else ""
        self.text += new
        return new

    def feed(self, piece: str) -> str:
        """Add generated text; returns the text that can be shown now ("" while held)."""
        if self.stopped is not None:
            return ""
        self.raw += piece
        return self._render(final=False)

    def finish(self) -> str:
        """The answer is complete: resolve what was held back."""
        if self.stopped is not None:
            return ""
        return self._render(final=True)


def check_stops(stops: Iterable[str]) -> tuple[str, ...]:
    """Stop sequences as given by a user; an empty one is refused."""
    out = tuple(stops)
    for s in out:
        if not isinstance(s, str) or s == "":
            raise InputError("--stop: an empty stop sequence would end every answer before it starts")
    return out


__all__ = ["DEFAULT_STOPS", "Cleaner", "TagMap", "check_stops"]
