"""`export --check`: does a recompile keep the cached prefix of an earlier export
byte-identical? The earlier document is validated as a whole before it is used."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aotcc._io import check_plain, escape, json_path, read_input, show
from aotcc.compiled import Compiled
from aotcc.errors import InputError
from aotcc.export.providers import TARGETS
from aotcc.export.targets import DYNAMIC, FORMAT, Artifact, Export, compiled_of, export_request
from aotcc.limits import MAX_DEPTH, MAX_DOCUMENT_BYTES


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads an earlier export document, refusing anything else with a one-line error.
    The whole shape `check` uses is validated here, so a document accepted cannot make
    a later step fail."""
    raw = read_input(path, limit=MAX_DOCUMENT_BYTES)
    shown = show(path)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        pos = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(f"{shown}: not JSON{pos}: {getattr(e, 'msg', e)}") from None
    except RecursionError:
        raise InputError(f"{shown}: not an aotcc export document (nested more than {MAX_DEPTH} levels deep)") from None
    return validate_document(doc, shown)


class _Shape:
    """Typed access to a document, each failure an `InputError` naming the JSON path."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, where: list[str | int], what: str) -> InputError:
        return InputError(f"{self.label}: {json_path(where)}: {what}")

    def get(self, node: Any, where: list[str | int], key: str | int, kind: type | tuple[type, ...],
            *, optional: bool = False, nullable: bool = False) -> Any:
        """The value at `key`: of type `kind`; with `optional` it may be absent, with
        `nullable` null (both give None)."""
        here = [*where, key]
        if isinstance(key, int):
            v = node[key] if isinstance(node, list) and -len(node) <= key < len(node) else _ABSENT
        else:
            v = node.get(key, _ABSENT) if isinstance(node, dict) else _ABSENT
        if (v is _ABSENT and optional) or (v is None and nullable):
            return None
        if v is _ABSENT:
            raise self.fail(here, "missing")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            names = " or ".join({dict: "an object", list: "an array", str: "a string", int: "an integer",
                                 bool: "true or false"}.get(k, k.__name__) for k in kinds)
            raise self.fail(here, f"expected {names}, found {_json_type(v)}")
        return v

    def whole(self, node: Any, where: list[str | int], key: str, lo: int, hi: int, *, optional: bool = False,
              nullable: bool = False) -> int | None:
        v: int | None = self.get(node, where, key, int, optional=optional, nullable=nullable)
        if v is not None and not lo <= v <= hi:
            raise self.fail([*where, key], f"{v} is outside {lo}..{hi}")
        return v

    def texts(self, node: Any, where: list[str | int]) -> None:
        """A list of objects each with a string `text` (Anthropic system blocks, Gemini parts)."""
        for i, item in enumerate(node):
            self.get(node, where, i, dict)
            self.get(item, [*where, i], "text", str)


_ABSENT = object()


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(v), type(v).__name__)


def validate_document(doc: Any, label: str = "OLD") -> dict[str, Any]:
    """`doc` if it is an export document of a known format whose every field `check` reads
    has the type and range it needs; else an `InputError` naming the JSON path."""
    check_plain(doc, label)
    if not isinstance(doc, dict) or "aotcc_export" not in doc:
        raise InputError(f"{label}: not an aotcc export document (no \"aotcc_export\" field)")
    if doc["aotcc_export"] != FORMAT or isinstance(doc["aotcc_export"], bool):
        raise InputError(f"{label}: export format {escape(repr(doc['aotcc_export']))[:40]}, this aotcc reads {FORMAT}")
    for key in ("target", "options", "cache", "requests"):
        if key not in doc:
            raise InputError(f"{label}: export document has no {key!r} field")
    v = _Shape(label)
    target = v.get(doc, [], "target", str)
    if target not in TARGETS:
        raise InputError(f"{label}: unknown target {escape(repr(target))[:60]}")
    opts = v.get(doc, [], "options", dict)
    for key in ("model", "ttl", "prompt_cache_key", "slot_file", "server"):
        v.get(opts, ["options"], key, str, optional=True, nullable=True)
    for key, allowed in (("api", ("chat", "responses")), ("gemini_as", ("system", "user"))):
        value = v.get(opts, ["options"], key, str, optional=True, nullable=True)
        if value is not None and value not in allowed:
            raise v.fail(["options", key], f"expected {' or '.join(allowed)}, found {escape(repr(value))[:40]}")
    v.whole(opts, ["options"], "breakpoints", 1, 64, optional=True, nullable=True)
    v.whole(opts, ["options"], "max_tokens", 1, 1 << 20, optional=True, nullable=True)
    v.whole(opts, ["options"], "slot", 0, 1 << 20, optional=True, nullable=True)
    art = v.get(doc, [], "artifact", dict, optional=True)
    if art is not None:
        v.whole(art, ["artifact"], "static_tokens", 0, 1 << 62, optional=True)
    cache = v.get(doc, [], "cache", dict)
    segments = v.get(cache, ["cache"], "segments", list, optional=True) or []
    for i, seg in enumerate(segments):
        v.get(segments, ["cache", "segments"], i, dict)
        v.whole(seg, ["cache", "segments", i], "cumulative_tokens", 0, 1 << 62)
    for i, row in enumerate(v.get(cache, ["cache"], "chunks", list, optional=True) or []):
        where: list[str | int] = ["cache", "chunks", i]
        v.get(cache["chunks"], ["cache", "chunks"], i, dict)
        v.whole(row, where, "index", 0, 1 << 62)
        v.get(row, where, "blake3", str)
        span = v.get(row, where, "bytes", list)
        if len(span) != 2:
            raise v.fail([*where, "bytes"], f"expected [start, end], found {len(span)} values")
        for j in range(2):
            v.get(span, [*where, "bytes"], j, int)
    requests = v.get(doc, [], "requests", list)
    names: set[str] = set()
    for i, req in enumerate(requests):
        v.get(requests, ["requests"], i, dict)
        name = v.get(req, ["requests", i], "name", str)
        v.get(req, ["requests", i], "body", dict)
        if name in names:
            raise v.fail(["requests", i, "name"], f"a second request named {escape(repr(name))[:60]}")
        names.add(name)
    _validate_prefix(v, target, {r["name"]: (i, r["body"]) for i, r in enumerate(requests)}, segments)
    return doc


def _validate_prefix(v: _Shape, target: str, reqs: dict[str, tuple[int, dict[str, Any]]], segments: list[Any]) -> None:
    """The request body that carries the static prefix, as `static_prefix` reads it."""
    need = {"anthropic": ("messages",), "openai": ("chat.completions", "responses"), "gemini": ("cachedContents.create",),
            "llama-server": ("completion",)}[target]
    name = next((n for n in need if n in reqs), None)
    if name is None:
        raise InputError(f"{v.label}: {target} request body is missing its static prefix (no request named "
                         f"{' or '.join(repr(n) for n in need)})")
    i, body = reqs[name]
    at: list[str | int] = ["requests", i, "body"]
    if target == "anthropic":
        system = v.get(body, at, "system", list)
        v.texts(system, [*at, "system"])
        cached = sum(1 for b in system if "cache_control" in b)
        if cached > len(segments):
            raise v.fail(["cache", "segments"], f"{len(segments)} segments for {cached} cached system blocks")
    elif target == "openai":
        if name == "chat.completions":
            messages = v.get(body, at, "messages", list)
            first = v.get(messages, [*at, "messages"], 0, dict)
            v.get(first, [*at, "messages", 0], "content", str)
        else:
            v.get(body, at, "instructions", str)
    elif target == "gemini":
        if "systemInstruction" in body:
            content = v.get(body, at, "systemInstruction", dict)
            where = [*at, "systemInstruction"]
        else:
            contents = v.get(body, at, "contents", list)
            content = v.get(contents, [*at, "contents"], 0, dict)
            where = [*at, "contents", 0]
        v.texts(v.get(content, where, "parts", list), [*where, "parts"])
    else:
        prompt = v.get(body, at, "prompt", (str, list))
        if isinstance(prompt, list):
            for j, t in enumerate(prompt):
                if isinstance(t, bool) or not isinstance(t, (str, int)):
                    raise v.fail([*at, "prompt", j], f"expected a token id or a string, found {_json_type(t)}")


def static_prefix(doc: dict[str, Any]) -> str | list[Any]:
    """The bytes the provider caches, read back from the request body itself (so a
    hand-edited body is checked as sent): text, or token ids for a bundle-backed prompt.
    `doc` has passed `validate_document`."""
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
    doc = validate_document(old) if isinstance(old, dict) else read_document(old)
    label = "OLD" if isinstance(old, dict) else show(old)
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


__all__ = ["CheckResult", "check", "read_document", "static_prefix", "validate_document"]
