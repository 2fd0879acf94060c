"""Provider export: a compiled prompt as the request bodies hosted prompt caches want.

Each provider finds the cacheable prefix in a different place: Anthropic in `system`
text blocks ending in `cache_control` breakpoints (at most 4, each past a minimum
length), OpenAI in the first bytes of the prompt (automatic, 1024 tokens or more),
Gemini in a `cachedContents` object that a generate call names, llama-server in a
slot's KV cache (`cache_prompt`, or a slot restored from a KV bundle). This module
owns that placement, the provider limits (`data/providers.toml`), the stability check
of a recompile against an earlier export, and the cost estimate.

    import aotcc
    doc = aotcc.export.export_request("prompt.aotc", "anthropic", model="claude-sonnet-4-5")
    doc.save("request.json")          # an export document; its requests[].body are what you POST

Breakpoints sit only at chunk boundaries. The compiler puts every definition block at
the start of a chunk and never splits a tag across chunks, so a cached block never cuts
one in half. Token counts are the artifact's (the compile's tokenizer), not the
provider's, so the minimum-length check is as exact as that tokenizer.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence, Union

from aotcc import _core
from aotcc._io import atomic_write, read_input
from aotcc.compiled import Compiled, load
from aotcc.errors import InputError

#: The marked slot for the per-request (dynamic) part: replace this string.
DYNAMIC = "{{AOTCC_DYNAMIC}}"
#: Gemini: replace with the `name` the cachedContents create call returns.
CACHE_NAME = "{{AOTCC_CACHED_CONTENT_NAME}}"
TARGETS = ("anthropic", "openai", "gemini", "llama-server")
FORMAT = 1
DAY = 86400

_DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "providers.toml"
_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")

Artifact = Union[Compiled, str, "os.PathLike[str]"]


# --- provider limits -------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One model family of a provider: its minimum cacheable length and prices."""

    provider: str
    name: str
    models: tuple[str, ...]
    min_cache_tokens: int
    read_multiplier: float | None
    input_price: float | None
    output_price: float | None
    storage_price: float | None
    missing: str | None
    sources: dict[str, str]


@dataclass(frozen=True)
class Provider:
    """A provider's cache rules (breakpoints, TTLs, multipliers) and its families."""

    name: str
    table: dict[str, Any]
    families: tuple[Family, ...]
    sources: dict[str, dict[str, str]]

    @property
    def max_breakpoints(self) -> int:
        return int(self.table.get("max_breakpoints", 0))

    @property
    def ttls(self) -> list[str]:
        return list(self.table.get("ttls", []))

    @property
    def default_model(self) -> str:
        return str(self.table["default_model"])

    def write_multiplier(self, ttl: str | None) -> float:
        w = self.table.get("write_multiplier", 1.0)
        if isinstance(w, dict):
            return float(w[ttl or self.table["default_ttl"]])
        return float(w)

    def lifetime_s(self, ttl: str | None) -> int:
        """How long a cache entry lives after its last use (or creation, for Gemini)."""
        ttl = ttl or self.table.get("default_ttl")
        table = self.table.get("lifetime_seconds", {})
        if ttl in table:
            return int(table[ttl])
        return parse_duration(str(ttl), "--ttl")

    def family(self, model: str | None) -> tuple[Family, str]:
        """The family of API model id `model` (a date or version suffix is allowed)."""
        model = model or self.default_model
        bare = model.removeprefix("models/")
        for cand in (bare, _SUFFIX.sub("", bare)):
            for f in self.families:
                if cand in f.models:
                    return f, bare
        known = ", ".join(m for f in self.families for m in f.models)
        raise InputError(
            f"--model {model}: unknown model family for {self.name}; known: {known} "
            f"(add a [[providers.{self.name}.family]] to {_DEFAULT_DATA.name} with its limits and sources)"
        )


def parse_duration(text: str, what: str) -> int:
    """Seconds in `300s`, `5m`, `1h`, `2d` (the Gemini API takes `<seconds>s`)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise InputError(f"{what} {text!r}: expected a duration such as 300s, 5m, 1h")
    secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": DAY}[m.group(2)]
    if secs <= 0:
        raise InputError(f"{what} {text!r}: must be positive")
    return int(math.ceil(secs))


def _num(t: dict[str, Any], key: str) -> float | None:
    v = t.get(key)
    return None if v is None else float(v)


def load_providers(path: str | os.PathLike[str] | None = None) -> dict[str, Provider]:
    """Reads and checks the provider table: every number must name a known source."""
    if path is None:
        return _default_providers()
    return _parse_providers(Path(path))


@lru_cache(maxsize=1)
def _default_providers() -> dict[str, Provider]:
    return _parse_providers(_DEFAULT_DATA)


def _parse_providers(path: Path) -> dict[str, Provider]:
    try:
        data = tomllib.loads(read_input(path).decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from None
    sources = data.get("sources", {})
    out: dict[str, Provider] = {}
    for pname, table in data.get("providers", {}).items():
        def need_source(t: dict[str, Any], key: str, where: str) -> None:
            ref = t.get(key)
            if ref not in sources:
                raise InputError(f"{path}: {where}: {key} {ref!r} is not a [sources] entry")

        for key in ("max_breakpoints", "min_cache_tokens", "write_multiplier", "read_multiplier", "ttls"):
            if key in table:
                src = {"write_multiplier": "multipliers_source", "read_multiplier": "multipliers_source",
                       "ttls": "ttls_source"}.get(key, f"{key}_source")
                need_source(table, src, f"providers.{pname}")
        fams = []
        for f in table.get("family", []):
            where = f"providers.{pname} family {f.get('name')!r}"
            refs: dict[str, str] = {}
            if "min_cache_tokens" in f:
                need_source(f, "min_cache_tokens_source", where)
                refs["min_cache_tokens"] = f["min_cache_tokens_source"]
            elif "min_cache_tokens" in table:
                refs["min_cache_tokens"] = table["min_cache_tokens_source"]
            else:
                raise InputError(f"{path}: {where}: no min_cache_tokens")
            if any(k in f for k in ("input_usd_per_mtok", "output_usd_per_mtok", "storage_usd_per_mtok_hour", "read_multiplier")):
                need_source(f, "price_source", where)
                refs["prices"] = f["price_source"]
            for key, src in (("multipliers", "multipliers_source"), ("max_breakpoints", "max_breakpoints_source")):
                if src in table:
                    refs[key] = table[src]
            min_tokens = int(f.get("min_cache_tokens", table.get("min_cache_tokens", 0)))
            read = f.get("read_multiplier", table.get("read_multiplier"))
            fams.append(Family(
                provider=pname, name=str(f["name"]), models=tuple(f["models"]), min_cache_tokens=min_tokens,
                read_multiplier=None if read is None else float(read),
                input_price=_num(f, "input_usd_per_mtok"), output_price=_num(f, "output_usd_per_mtok"),
                storage_price=_num(f, "storage_usd_per_mtok_hour"), missing=f.get("missing"),
                sources={k: sources[v]["url"] for k, v in refs.items()},
            ))
        out[pname] = Provider(pname, {k: v for k, v in table.items() if k != "family"}, tuple(fams), sources)
    missing = [t for t in TARGETS if t not in out]
    if missing:
        raise InputError(f"{path}: no [providers.{missing[0]}] table")
    return out


def provider(target: str) -> Provider:
    if target not in TARGETS:
        raise InputError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}")
    return _default_providers()[target]


# --- breakpoints -----------------------------------------------------------------------


def place_breakpoints(tokens: Sequence[int], min_tokens: int, max_breakpoints: int) -> list[int]:
    """Chunk indices after which a cache breakpoint goes (the last is the final chunk).

    Every segment between breakpoints holds at least `min_tokens`. The target segment
    size is the total split `max_breakpoints` ways, rounded up to a multiple of
    `min_tokens`, and each cut is the first chunk boundary past a multiple of it: a cut
    depends only on the chunks before it and on that rounded size, so an edit late in
    the prompt leaves every earlier block byte-identical (unless it moves the total
    across a multiple of `max_breakpoints * min_tokens`). Empty when the whole prefix is
    below the minimum: nothing is cacheable.
    """
    n = len(tokens)
    total = int(sum(tokens))
    if n == 0 or max_breakpoints <= 0 or total < max(min_tokens, 1):
        return []
    step = max(min_tokens, 1)
    size = step * max(1, math.ceil(total / (max_breakpoints * step)))
    cuts: list[int] = []
    cum = last = 0
    for i in range(n - 1):
        cum += int(tokens[i])
        if len(cuts) >= max_breakpoints - 1:
            break
        if cum >= (len(cuts) + 1) * size and cum - last >= min_tokens:
            cuts.append(i)
            last = cum
    while cuts and total - last < min_tokens:  # the final segment must meet the minimum too
        cuts.pop()
        last = int(sum(tokens[: cuts[-1] + 1])) if cuts else 0
    return cuts + [n - 1]


# --- the export document -----------------------------------------------------------------


@dataclass
class Export:
    """An export document: the provider requests plus what `--check` needs to compare."""

    document: dict[str, Any]

    @property
    def target(self) -> str:
        return str(self.document["target"])

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.document["requests"])

    @property
    def warnings(self) -> list[str]:
        return list(self.document["warnings"])

    @property
    def segments(self) -> list[dict[str, Any]]:
        return list(self.document["cache"]["segments"])

    @property
    def static_tokens(self) -> int:
        return int(self.document["artifact"]["static_tokens"])

    def body(self, name: str | None = None) -> dict[str, Any]:
        """The body of request `name` (default: the one that carries the static prefix)."""
        reqs = self.requests
        if name is None:
            name = self.document["cache"]["prefix_request"]
        for r in reqs:
            if r["name"] == name:
                return r["body"]
        raise KeyError(name)

    def to_json(self) -> bytes:
        """Canonical bytes: the same compile and options give the same bytes."""
        return (json.dumps(self.document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write(path, self.to_json())


def _compiled(artifact: Artifact) -> Compiled:
    if isinstance(artifact, Compiled):
        return artifact
    p = Path(artifact)
    if str(artifact) != "-":
        head = read_input(p)[:8]
        from aotcc.bundle import MAGIC

        if head.startswith(MAGIC):
            raise InputError(
                f"{p}: is a KV bundle (.aotkv), not a compiled prompt; export the .aotc it was made from "
                "(the llama-server target also takes a bundle to write its slot state file)"
            )
    return load(artifact)


def _chunk_rows(c: Compiled, counts: Sequence[int]) -> list[dict[str, Any]]:
    ch = c.chunks
    text = c.text
    rows = []
    byte = 0
    for i in range(len(ch)):
        s, e = int(ch.out_start[i]), int(ch.out_end[i])
        data = text[s:e].encode("utf-8")
        rows.append({"index": i, "chars": [s, e], "bytes": [byte, byte + len(data)], "tokens": int(counts[i]),
                     "blake3": _core.blake3_hex(data)})
        byte += len(data)
    return rows


def _recount(c: Compiled, tokenizer: str | os.PathLike[str] | None) -> tuple[list[int], str]:
    if tokenizer is None:
        return [int(t) for t in c.chunks.out_tokens], str(c.manifest["tokenizer"])
    from aotcc.counting import resolve_tokenizer

    counter, fingerprint = resolve_tokenizer(tokenizer)
    assert counter is not None
    pieces = [c.chunk_text(i) for i in range(len(c.chunks))]
    return [int(n) for n in counter(pieces)], fingerprint


def export_request(
    artifact: Artifact,
    target: str,
    *,
    model: str | None = None,
    api: str = "chat",
    ttl: str | None = None,
    prompt_cache_key: str | None = None,
    breakpoints: int | None = None,
    max_tokens: int | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    bundle: str | os.PathLike[str] | None = None,
    slot: int = 0,
    slot_file: str | None = None,
    server: str | None = None,
    gemini_as: str = "system",
) -> Export:
    """Builds the export document of a compiled prompt for `target`.

    `model` picks the model family whose limits apply (default: the provider's
    `default_model`). `api` is `chat` or `responses` (OpenAI). `ttl` is `5m`/`1h`
    (Anthropic), `in_memory`/`24h` (OpenAI `prompt_cache_retention`) or a duration
    (Gemini, default 3600s). `breakpoints` caps the Anthropic breakpoints (default: the
    provider's maximum, 4). `tokenizer` recounts the chunks with a `tokenizer.json`.
    `bundle` (llama-server) names a `.aotkv` of this prompt: the body then sends the
    bundle's exact token ids and restores slot `slot` from `slot_file` first.
    """
    prov = provider(target)
    c = _compiled(artifact)
    if not c.text:
        raise InputError(f"{c.path or 'artifact'}: the compiled prompt is empty; nothing to cache")
    _check_options(target, api=api, ttl=ttl, prompt_cache_key=prompt_cache_key, bundle=bundle,
                   breakpoints=breakpoints, model=model, gemini_as=gemini_as, prov=prov)
    fam, model_id = prov.family(model)
    counts, tok_fp = _recount(c, tokenizer)
    chunks = _chunk_rows(c, counts)
    total = sum(counts)
    warnings: list[str] = []
    exact = not tok_fp.startswith("estimator")
    if not exact and fam.min_cache_tokens:
        warnings.append(
            f"token counts come from the built-in estimator ({tok_fp}), not {fam.name}'s tokenizer: the "
            f"minimum-length check ({fam.min_cache_tokens} tokens) is approximate; pass --tokenizer tokenizer.json "
            "to recount")
    if DYNAMIC in c.text or CACHE_NAME in c.text:
        warnings.append(f"the compiled prompt itself contains {DYNAMIC} or {CACHE_NAME}: replace only the "
                        "placeholder that stands alone in the dynamic slot")
    if fam.min_cache_tokens and total < fam.min_cache_tokens:
        warnings.append(
            f"the static prefix has {total:,} tokens, below the {fam.min_cache_tokens:,}-token minimum of "
            f"{fam.name}: the provider will not cache it")

    if target == "anthropic":
        limit = prov.max_breakpoints if breakpoints is None else breakpoints
        cuts = place_breakpoints(counts, fam.min_cache_tokens, limit)
    else:
        cuts = [len(chunks) - 1] if total >= fam.min_cache_tokens else []
    segments = _segments(chunks, cuts, c)

    builder = {"anthropic": _anthropic, "openai": _openai, "gemini": _gemini, "llama-server": _llama_server}[target]
    requests, prefix_request, extra = builder(
        c, prov, fam, model_id, segments, warnings, api=api, ttl=ttl, prompt_cache_key=prompt_cache_key,
        max_tokens=max_tokens, bundle=bundle, slot=slot, slot_file=slot_file, server=server, gemini_as=gemini_as)
    options = {"model": model_id, "api": api if target == "openai" else None, "ttl": ttl,
               "prompt_cache_key": prompt_cache_key, "breakpoints": breakpoints, "max_tokens": max_tokens,
               "slot": slot if target == "llama-server" else None, "slot_file": slot_file, "server": server,
               "gemini_as": gemini_as if target == "gemini" else None}
    doc: dict[str, Any] = {
        "aotcc_export": FORMAT,
        "target": target,
        "options": {k: v for k, v in options.items() if v is not None},
        "family": {"name": fam.name, "min_cache_tokens": fam.min_cache_tokens,
                   "max_breakpoints": prov.max_breakpoints, "sources": fam.sources},
        "dynamic_placeholder": DYNAMIC,
        "artifact": {"hash": c.hash, "tokenizer": tok_fp, "exact_token_counts": exact,
                     "chunks": len(chunks), "static_tokens": total, "static_bytes": chunks[-1]["bytes"][1]},
        "cache": {"prefix_request": prefix_request, "cacheable": bool(cuts), **extra,
                  "segments": segments, "chunks": chunks},
        "requests": requests,
        "warnings": warnings,
    }
    return Export(doc)


def _check_options(target: str, *, api: str, ttl: str | None, prompt_cache_key: str | None,
                   bundle: object, breakpoints: int | None, model: str | None, gemini_as: str,
                   prov: Provider) -> None:
    if api not in ("chat", "responses"):
        raise InputError(f"--api {api}: expected chat or responses")
    if prompt_cache_key is not None and target != "openai":
        raise InputError("--prompt-cache-key applies to --target openai only")
    if bundle is not None and target != "llama-server":
        raise InputError("--bundle applies to --target llama-server only")
    if breakpoints is not None:
        if target != "anthropic":
            raise InputError("--breakpoints applies to --target anthropic only")
        if not 1 <= breakpoints <= prov.max_breakpoints:
            raise InputError(f"--breakpoints {breakpoints}: Anthropic allows 1 to {prov.max_breakpoints}")
    if gemini_as not in ("system", "user"):
        raise InputError(f"--gemini-as {gemini_as}: expected system or user")
    if ttl is not None:
        if target == "llama-server":
            raise InputError("--ttl does not apply to llama-server (a slot keeps its cache until reused)")
        if target == "gemini":
            parse_duration(ttl, "--ttl")
        elif ttl not in prov.ttls:
            raise InputError(f"--ttl {ttl}: {target} takes {' or '.join(prov.ttls)}")
    if model is not None and target == "llama-server" and model != "local":
        raise InputError("--model does not apply to llama-server (the server runs the model it was started with)")


def _segments(chunks: list[dict[str, Any]], cuts: list[int], c: Compiled) -> list[dict[str, Any]]:
    """Consecutive chunk runs ending at each breakpoint (one run when nothing is cacheable)."""
    ends = cuts or [len(chunks) - 1]
    out = []
    first = 0
    for end in ends:
        run = chunks[first : end + 1]
        s, e = run[0]["chars"][0], run[-1]["chars"][1]
        out.append({"chunks": [first, end], "chars": [s, e], "bytes": [run[0]["bytes"][0], run[-1]["bytes"][1]],
                    "tokens": sum(r["tokens"] for r in run), "cumulative_tokens": sum(r["tokens"] for r in chunks[: end + 1]),
                    "breakpoint": bool(cuts)})
        first = end + 1
    return out


def _anthropic(c: Compiled, prov: Provider, fam: Family, model: str, segments: list[dict[str, Any]],
               warnings: list[str], *, ttl: str | None, max_tokens: int | None, **_: Any):
    blocks = []
    for seg in segments:
        s, e = seg["chars"]
        block: dict[str, Any] = {"type": "text", "text": c.text[s:e]}
        if seg["breakpoint"]:
            block["cache_control"] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
        blocks.append(block)
    body = {"model": model, "max_tokens": max_tokens or 1024, "system": blocks,
            "messages": [{"role": "user", "content": DYNAMIC}]}
    req = {"name": "messages", "method": "POST", "url": prov.table["endpoint"],
           "headers": {"anthropic-version": "2023-06-01", "content-type": "application/json"}, "body": body}
    return [req], "messages", {"breakpoints": sum(1 for s in segments if s["breakpoint"]),
                               "ttl": ttl or prov.table["default_ttl"]}


def _openai(c: Compiled, prov: Provider, fam: Family, model: str, segments: list[dict[str, Any]],
            warnings: list[str], *, api: str, ttl: str | None, prompt_cache_key: str | None,
            max_tokens: int | None, **_: Any):
    # The static prefix is the first message, byte for byte; the dynamic part comes last.
    if api == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "system", "content": c.text},
                                                             {"role": "user", "content": DYNAMIC}]}
        if max_tokens:
            body["max_completion_tokens"] = max_tokens
        url, name = prov.table["endpoint_chat"], "chat.completions"
    else:
        body = {"model": model, "instructions": c.text, "input": DYNAMIC}
        if max_tokens:
            body["max_output_tokens"] = max_tokens
        url, name = prov.table["endpoint_responses"], "responses"
    if prompt_cache_key is not None:
        body["prompt_cache_key"] = prompt_cache_key
    if ttl is not None:
        body["prompt_cache_retention"] = ttl
    total = segments[-1]["cumulative_tokens"]
    cached = (total // 128) * 128 if total >= fam.min_cache_tokens else 0  # hits come in 128-token steps
    req = {"name": name, "method": "POST", "url": url, "headers": {"content-type": "application/json"}, "body": body}
    return [req], name, {"expected_cached_tokens": cached, "ttl": ttl or prov.table["default_ttl"]}


def _gemini(c: Compiled, prov: Provider, fam: Family, model: str, segments: list[dict[str, Any]],
            warnings: list[str], *, ttl: str | None, max_tokens: int | None, gemini_as: str, **_: Any):
    ttl_s = parse_duration(ttl or prov.table["default_ttl"], "--ttl")
    create: dict[str, Any] = {"model": f"models/{model}", "displayName": f"aotcc {c.hash[:16]}"}
    if gemini_as == "system":
        create["systemInstruction"] = {"parts": [{"text": c.text}]}
    else:
        create["contents"] = [{"role": "user", "parts": [{"text": c.text}]}]
    create["ttl"] = f"{ttl_s}s"
    # A request that uses a cache may not set systemInstruction, tools or toolConfig.
    generate: dict[str, Any] = {"cachedContent": CACHE_NAME,
                                "contents": [{"role": "user", "parts": [{"text": DYNAMIC}]}]}
    if max_tokens:
        generate["generationConfig"] = {"maxOutputTokens": max_tokens}
    reqs = [
        {"name": "cachedContents.create", "method": "POST", "url": prov.table["endpoint_cache"],
         "headers": {"content-type": "application/json"}, "body": create},
        {"name": "generateContent", "method": "POST",
         "url": prov.table["endpoint_generate"].format(model=model),
         "headers": {"content-type": "application/json"}, "body": generate},
    ]
    return reqs, "cachedContents.create", {"ttl": f"{ttl_s}s", "cache_name_placeholder": CACHE_NAME}


def _llama_server(c: Compiled, prov: Provider, fam: Family, model: str, segments: list[dict[str, Any]],
                  warnings: list[str], *, bundle: str | os.PathLike[str] | None, slot: int,
                  slot_file: str | None, server: str | None, max_tokens: int | None, **_: Any):
    base = (server or prov.table["endpoint"]).rstrip("/")
    extra: dict[str, Any] = {"slot": slot}
    reqs = []
    prompt: Any = c.text + DYNAMIC
    if bundle is not None:
        from aotcc.bundle import Bundle

        b = Bundle.open(bundle)
        want = b.fingerprint["prompt"].get("aotc_hash")
        if want != c.hash:
            raise InputError(f"{bundle}: bundle was made from compiled prompt {str(want)[:16]}, not this one "
                             f"({c.hash[:16]}); prefill it again")
        # The exact token ids the bundle holds: the server's prefix match then covers all of them.
        prompt = [int(t) for t in b.tokens] + [DYNAMIC]
        name = Path(slot_file).name if slot_file else Path(bundle).with_suffix(".slot.bin").name
        reqs.append({"name": "slots.restore", "method": "POST", "url": f"{base}/slots/{slot}?action=restore",
                     "headers": {"content-type": "application/json"}, "body": {"filename": name}})
        tmpl = b.template
        extra.update({"bundle_tokens": b.n_tokens, "slot_file": name, "llama_cpp": b.fingerprint["llama"]["llama_cpp"],
                      "template": tmpl["name"] if tmpl else None})
        if tmpl:
            warnings.append(f"the bundle wraps the prompt in the {tmpl['name']} chat template: format the dynamic "
                            "part as that template's user turn")
    body: dict[str, Any] = {"prompt": prompt, "cache_prompt": True, "id_slot": slot}
    if max_tokens:
        body["n_predict"] = max_tokens
    reqs.append({"name": "completion", "method": "POST", "url": f"{base}/completion",
                 "headers": {"content-type": "application/json"}, "body": body})
    return reqs, "completion", extra


# --- stability check ---------------------------------------------------------------------


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
            return reqs["chat.completions"]["messages"][0]["content"]
        return reqs["responses"]["instructions"]
    if target == "gemini":
        body = reqs["cachedContents.create"]
        content = body["systemInstruction"] if "systemInstruction" in body else body["contents"][0]
        return "".join(p["text"] for p in content["parts"])
    prompt = reqs["completion"]["prompt"]
    if isinstance(prompt, str):
        return prompt.rsplit(DYNAMIC, 1)[0]
    return [t for t in prompt if not isinstance(t, str)]


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
    c = _compiled(artifact)
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


# --- cost estimate -------------------------------------------------------------------------


@dataclass
class Estimate:
    """Tokens and cost per day with and without the cache, and the break-even volume."""

    target: str
    family: str
    requests_per_day: int
    static_tokens: int
    dynamic_tokens: int
    output_tokens: int
    prices: dict[str, float | None]
    ttl: str | None
    lifetime_s: int | None
    warm: bool
    writes_per_day: int
    reads_per_day: int
    without: dict[str, float | int | None]
    with_cache: dict[str, float | int | None]
    break_even_requests_per_day: int | None
    assumptions: list[str]

    @property
    def saved_usd(self) -> float | None:
        a, b = self.without["total_usd"], self.with_cache["total_usd"]
        return None if a is None or b is None else float(a) - float(b)

    def to_dict(self) -> dict[str, Any]:
        saved = self.saved_usd
        a = self.without["total_usd"]
        return {
            "target": self.target, "family": self.family, "requests_per_day": self.requests_per_day,
            "static_tokens": self.static_tokens, "dynamic_tokens": self.dynamic_tokens,
            "output_tokens": self.output_tokens, "prices": self.prices, "ttl": self.ttl,
            "cache_lifetime_s": self.lifetime_s, "cache_warm": self.warm, "writes_per_day": self.writes_per_day,
            "reads_per_day": self.reads_per_day, "without_cache": self.without, "with_cache": self.with_cache,
            "saved_usd_per_day": None if saved is None else round(saved, 6),
            "saved_percent": None if saved is None or not a else round(100 * saved / float(a), 2),
            "break_even_requests_per_day": self.break_even_requests_per_day, "assumptions": self.assumptions,
        }

    def table(self) -> str:
        d = self.to_dict()
        w, c = self.without, self.with_cache

        def usd(v: Any) -> str:
            return "n/a" if v is None else f"${v:,.4f}"

        rows = [
            ("static tokens at full price", f"{w['static_full']:,}", f"{c['static_full']:,}"),
            ("static tokens written to cache", "0", f"{c['static_written']:,}"),
            ("static tokens read from cache", "0", f"{c['static_read']:,}"),
            ("dynamic tokens", f"{w['dynamic']:,}", f"{c['dynamic']:,}"),
            ("output tokens", f"{w['output']:,}", f"{c['output']:,}"),
            ("input cost", usd(w["input_usd"]), usd(c["input_usd"])),
            ("cache storage", usd(w["storage_usd"]), usd(c["storage_usd"])),
            ("output cost", usd(w["output_usd"]), usd(c["output_usd"])),
            ("total per day", usd(w["total_usd"]), usd(c["total_usd"])),
        ]
        lines = [f"{self.target} {self.family}: {self.requests_per_day:,} requests/day, {self.static_tokens:,} static + "
                 f"{self.dynamic_tokens:,} dynamic input tokens, {self.output_tokens:,} output tokens per request", ""]
        lines.append(f"  {'per day':<32} {'without cache':>16} {'with cache':>16}")
        lines += [f"  {a:<32} {b:>16} {x:>16}" for a, b, x in rows]
        if d["saved_usd_per_day"] is not None:
            lines.append(f"\n  saved {usd(d['saved_usd_per_day'])} per day ({d['saved_percent']}%)")
        be = self.break_even_requests_per_day
        lines.append(f"  break-even: {be:,} requests/day" if be is not None else "  break-even: never (no saving)")
        lines.append("\n  assumptions:")
        lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines) + "\n"


def estimate(
    target: str,
    *,
    static_tokens: int,
    requests_per_day: int,
    dynamic_tokens: int,
    output_tokens: int = 0,
    model: str | None = None,
    ttl: str | None = None,
    price_input: float | None = None,
    price_output: float | None = None,
    read_multiplier: float | None = None,
    storage_price: float | None = None,
) -> Estimate:
    """Tokens and USD per day with and without the provider's cache.

    Model: requests arrive evenly spaced over the day. Anthropic and OpenAI keep an
    entry alive while hits come within its lifetime (TTL), so steady traffic writes once
    a day and reads on every other request; slower traffic writes on every request.
    Gemini keeps an explicit cache for its TTL used or not: it is created once per TTL
    and stored all day, and every request reads it. Break-even is the smallest number of
    requests per day at which the cache costs less.
    """
    prov = provider(target)
    fam, _ = prov.family(model)
    if ttl is not None and prov.ttls and ttl not in prov.ttls:
        raise InputError(f"--ttl {ttl}: {target} takes {' or '.join(prov.ttls)}")
    for name, v in (("--requests-per-day", requests_per_day), ("--dynamic-tokens", dynamic_tokens),
                    ("--output-tokens", output_tokens), ("static tokens", static_tokens)):
        if v < 0 or (name == "--requests-per-day" and v == 0):
            raise InputError(f"{name} {v}: must be {'positive' if name == '--requests-per-day' else 'zero or more'}")
    n, s, d, o = requests_per_day, static_tokens, dynamic_tokens, output_tokens
    assumptions = [f"requests arrive evenly spaced: one every {DAY / n:,.1f} s"]
    if target == "llama-server":
        empty = {"static_full": n * s, "static_written": 0, "static_read": 0, "dynamic": n * d, "output": n * o,
                 "input_usd": None, "storage_usd": None, "output_usd": None, "total_usd": None,
                 "prefill_tokens": n * (s + d)}
        cached = dict(empty, static_full=0, static_read=n * s, prefill_tokens=n * d)
        assumptions.append("local server: no token prices; with a restored slot (or cache_prompt hits) only the "
                           "dynamic tokens are prefilled")
        return Estimate(target, fam.name, n, s, d, o, {}, None, None, True, 0, n, empty, cached, 1, assumptions)
    pin = price_input if price_input is not None else fam.input_price
    pout = price_output if price_output is not None else fam.output_price
    r = read_multiplier if read_multiplier is not None else fam.read_multiplier
    if pin is None or r is None:
        raise InputError(f"{fam.name}: no input price or cache-read multiplier in providers.toml "
                         f"({fam.missing or 'not recorded'}); pass --price-input and --read-multiplier")
    if pout is None and o:
        raise InputError(f"{fam.name}: no output price in providers.toml; pass --price-output")
    pout = pout or 0.0
    w = prov.write_multiplier(ttl)
    life = prov.lifetime_s(ttl)
    mtok = 1e6
    without = {"static_full": n * s, "static_written": 0, "static_read": 0, "dynamic": n * d, "output": n * o,
               "input_usd": n * (s + d) * pin / mtok, "storage_usd": 0.0, "output_usd": n * o * pout / mtok}
    storage = 0.0
    if prov.table.get("lifetime_refreshes", True):
        warm = DAY / n <= life
        writes = 1 if warm else n
        reads = n - writes
        full = 0
        if s < fam.min_cache_tokens:  # below the minimum nothing is cached: every request pays full price
            writes, reads, full, warm = 0, 0, n, False
        assumptions.append(
            f"an entry lives {life:,} s after its last hit (ttl {ttl or prov.table.get('default_ttl')}); "
            + ("hits keep it warm, so it is written once a day" if warm and writes else
               "requests come further apart than that, so every request writes it anew" if writes else
               "the static prefix is below the minimum, so nothing is cached"))
        be = None
        if r < 1 and s >= fam.min_cache_tokens:
            be = max(math.ceil(DAY / life), math.floor(1 + (w - 1) / (1 - r)) + 1)
    else:  # explicit cache with a fixed lifetime (Gemini): created per TTL, stored all day
        creations = max(1, math.ceil(DAY / life))
        writes, reads, full, warm = creations, n, 0, True
        g = storage_price if storage_price is not None else fam.storage_price
        if g is None:
            raise InputError(f"{fam.name}: no cache storage price in providers.toml; pass --storage-price")
        storage = s * g * 24 / mtok
        assumptions.append(f"the cache is created {creations}x per day (ttl {life:,} s) and stored all day "
                           f"at ${g}/MTok/hour")
        be = math.floor((creations * w * pin + 24 * g) / (pin * (1 - r))) + 1 if r < 1 else None
        if s < fam.min_cache_tokens:
            writes, reads, full, storage, be = 0, 0, n, 0.0, None
    assumptions.append(f"cache writes cost {w}x and reads {r}x the input price of ${pin}/MTok")
    input_with = (writes * s * w + reads * s * r + full * s + n * d) * pin / mtok
    with_cache = {"static_full": full * s, "static_written": writes * s, "static_read": reads * s, "dynamic": n * d,
                  "output": n * o, "input_usd": input_with, "storage_usd": storage, "output_usd": n * o * pout / mtok}
    for t in (without, with_cache):
        t["total_usd"] = float(t["input_usd"]) + float(t["storage_usd"]) + float(t["output_usd"])
        for k in ("input_usd", "storage_usd", "output_usd", "total_usd"):
            t[k] = round(float(t[k]), 6)
    prices = {"input_usd_per_mtok": pin, "output_usd_per_mtok": pout, "write_multiplier": w, "read_multiplier": r}
    return Estimate(target, fam.name, n, s, d, o, prices, ttl or prov.table.get("default_ttl"), life, warm,
                    writes, reads, without, with_cache, be, assumptions)


__all__ = [
    "CACHE_NAME", "CheckResult", "DYNAMIC", "Estimate", "Export", "Family", "Provider", "TARGETS", "check",
    "estimate", "export_request", "load_providers", "place_breakpoints", "provider", "read_document", "static_prefix",
]
