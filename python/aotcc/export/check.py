"""`export --check`: does a recompile keep the cached prefix of an earlier export
byte-identical? The earlier document is validated as a whole before it is used."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aotcc._io import read_input
from aotcc.compiled import Compiled
from aotcc.errors import InputError
from aotcc.export.providers import TARGETS
from aotcc.export.targets import DYNAMIC, FORMAT, Artifact, Export, compiled_of, export_request


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads an earlier export document, refusing anything else with a one-line error."""
    raw = read_input(path)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        pos = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(f"{path}: not JSON{pos}: {getattr(e, 'msg', e)}") from None
    if not isinstance(doc, dict) or "aotcc_export" not in doc:
        raise InputError(f"{path}: not an aotcc export document (no \"aotcc_export\" field)")
    if doc["aotcc_export"] != FORMAT:
        raise InputError(f"{path}: export format {doc['aotcc_export']!r}, this aotcc reads {FORMAT}")
    for key in ("target", "options", "cache", "requests"):
        if key not in doc:
            raise InputError(f"{path}: export document has no {key!r} field")
    if doc["target"] not in TARGETS:
        raise InputError(f"{path}: unknown target {doc['target']!r}")
    try:
        static_prefix(doc)
    except (KeyError, IndexError, TypeError) as e:
        raise InputError(f"{path}: {doc['target']} request body is missing its static prefix ({e})") from None
    return doc


def static_prefix(doc: dict[str, Any]) -> str | list[Any]:
    """The bytes the provider caches, read back from the request body itself (so a
    hand-edited body is checked as sent): text, or token ids for a bundle-backed prompt."""
    target = doc["target"]
    reqs = {r["name"]: r["body"] for r in doc["requests"]}
    if target == "anthropic":
        return "".join(b["text"] for b in reqs["messages"]["system"])
    if target == "openai":
        if "chat.completions" in reqs:
            return _text(reqs["chat.completions"]["messages"][0]["content"])
        return _text(reqs["responses"]["instructions"])
    if target == "gemini":
        body = reqs["cachedContents.create"]
        content = body["systemInstruction"] if "systemInstruction" in body else body["contents"][0]
        return "".join(p["text"] for p in content["parts"])
    prompt = reqs["completion"]["prompt"]
    if isinstance(prompt, str):
        return prompt.rsplit(DYNAMIC, 1)[0]
    return [t for t in prompt if not isinstance(t, str)]


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, found {type(v).__name__}")
    return v


def _blocks(doc: dict[str, Any]) -> list[str]:
    """Anthropic: the text of each cached block (each ends at a breakpoint)."""
    if doc["target"] != "anthropic":
        return []
    system = next(r["body"]["system"] for r in doc["requests"] if r["name"] == "messages")
    return [b["text"] for b in system if "cache_control" in b]


@dataclass
class CheckResult:
    """Whether a recompile keeps the cached prefix of an earlier export byte-identical."""

    ok: bool
    message: str
    target: str
    static_tokens: int
    first_difference: dict[str, Any] | None = None
    breakpoints_kept: int | None = None
    breakpoints: int | None = None
    new: Export | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "message": self.message, "target": self.target,
                               "static_tokens": self.static_tokens}
        if self.breakpoints is not None:
            out.update(breakpoints=self.breakpoints, breakpoints_kept=self.breakpoints_kept)
        if self.first_difference is not None:
            out["first_difference"] = self.first_difference
        return out


def check(old: dict[str, Any] | str | os.PathLike[str], artifact: Artifact, *,
          tokenizer: str | os.PathLike[str] | None = None, bundle: str | os.PathLike[str] | None = None) -> CheckResult:
    """Re-exports `artifact` with the options recorded in `old` and compares the cached
    prefixes: identical → ok; else the first differing byte, its chunk, and the terms
    whose definition block or reference tag sits in that chunk."""
    doc = old if isinstance(old, dict) else read_document(old)
    label = "OLD" if isinstance(old, dict) else str(old)
    if doc["target"] == "llama-server" and "bundle_tokens" in doc["cache"] and bundle is None:
        raise InputError(f"{label}: was exported with --bundle (its prompt is token ids); pass --bundle with the "
                         "bundle of the recompiled prompt")
    opts = dict(doc["options"])
    new = export_request(
        artifact, doc["target"], model=opts.get("model"), api=opts.get("api", "chat"), ttl=opts.get("ttl"),
        prompt_cache_key=opts.get("prompt_cache_key"), breakpoints=opts.get("breakpoints"),
        max_tokens=opts.get("max_tokens"), tokenizer=tokenizer, bundle=bundle if doc["target"] == "llama-server" else None,
        slot=opts.get("slot", 0), slot_file=opts.get("slot_file"), server=opts.get("server"),
        gemini_as=opts.get("gemini_as", "system"))
    c = compiled_of(artifact)
    old_prefix, new_prefix = static_prefix(doc), static_prefix(new.document)
    old_blocks, new_blocks = _blocks(doc), _blocks(new.document)
    kept = 0
    for a, b in zip(old_blocks, new_blocks):
        if a != b:
            break
        kept += 1
    n_bp = len(old_blocks) if doc["target"] == "anthropic" else None
    tokens = int(doc.get("artifact", {}).get("static_tokens", 0))
    if old_prefix == new_prefix and old_blocks == new_blocks:
        what = f", all {n_bp} breakpoints hit" if n_bp else ""
        return CheckResult(True, f"cached prefix unchanged ({tokens:,} tokens{what})", doc["target"], tokens,
                           breakpoints=n_bp, breakpoints_kept=kept if n_bp is not None else None, new=new)
    diff = _first_difference(doc, new, c, old_prefix, new_prefix)
    if old_prefix == new_prefix:  # same text, different block boundaries
        diff["reason"] = "breakpoints moved"
    where = diff.get("byte")
    at = f"byte {where:,}" if where is not None else f"token {diff.get('token', '?')}"
    terms = diff.get("terms") or []
    tnote = f"; term{'s' * (len(terms) > 1)} there: {', '.join(repr(t) for t in terms)}" if terms else ""
    bp = ""
    if n_bp:
        kept_tok = doc["cache"]["segments"][kept - 1]["cumulative_tokens"] if kept else 0
        bp = f"; {kept} of {n_bp} breakpoints still hit ({kept_tok:,} tokens)"
    reason = diff.get("reason", "cached prefix changed")
    msg = (f"{label}: {reason} at {at} (chunk {diff.get('new_chunk')} of the recompile, "
           f"chunk {diff.get('old_chunk')} of the export){tnote}{bp}")
    return CheckResult(False, msg, doc["target"], tokens, first_difference=diff,
                       breakpoints=n_bp, breakpoints_kept=kept if n_bp is not None else None, new=new)


def _first_difference(old: dict[str, Any], new: Export, c: Compiled, a: str | list[Any], b: str | list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    old_chunks = old["cache"].get("chunks", [])
    new_chunks = new.document["cache"]["chunks"]
    if isinstance(a, str) and isinstance(b, str):
        i = _common_prefix(a, b)
        byte = len(a[:i].encode("utf-8"))
        out.update(byte=byte, char=i)
        out["old_chunk"] = next((r["index"] for r in old_chunks if r["bytes"][0] <= byte < r["bytes"][1]),
                                len(old_chunks) - 1 if old_chunks else None)
        out["new_chunk"] = next((r["index"] for r in new_chunks if r["chars"][0] <= i < r["chars"][1]),
                                len(new_chunks) - 1)
    else:
        out["token"] = _common_prefix(list(a), list(b))
        k = next((j for j, (x, y) in enumerate(zip(old_chunks, new_chunks)) if x["blake3"] != y["blake3"]),
                 min(len(old_chunks), len(new_chunks)))
        out["old_chunk"] = out["new_chunk"] = k if k < len(new_chunks) else len(new_chunks) - 1
    out["terms"] = _terms_in_chunk(c, int(out["new_chunk"]), out.get("char"))
    return out


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n  # binary search on slices: fast for long strings
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _terms_in_chunk(c: Compiled, chunk: int, char: int | None) -> list[str]:
    """Terms whose definition block or reference tag sits in `chunk`; the one whose span
    holds `char` first."""
    sm = c.source_map
    ch = c.chunks
    s, e = int(ch.out_start[chunk]), int(ch.out_end[chunk])
    names = {t.index: t.name for t in c.terms}
    hit: list[str] = []
    rest: list[str] = []
    for a, b, kind, term in zip(sm.out_start, sm.out_end, sm.kind, sm.term):
        if kind == 0 or term < 0 or not (s <= a < e):
            continue
        name = names.get(int(term), str(term))
        if char is not None and a <= char < b:
            if name not in hit:
                hit.append(name)
        elif name not in rest:
            rest.append(name)
    return hit + [n for n in rest if n not in hit]


__all__ = ["CheckResult", "check", "read_document", "static_prefix"]
