"""The export document and the request bodies of each target: Anthropic `system`
blocks with `cache_control` breakpoints, OpenAI Chat Completions or Responses with the
static prefix first, a Gemini `cachedContents` body and the `generateContent` that
names it, or a llama-server `/completion` (with a slot restore from a KV bundle)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from aotcc._io import atomic_write, read_input
from aotcc.compiled import Compiled, load
from aotcc.errors import InputError
from aotcc.export.placement import chunk_rows, place_breakpoints
from aotcc.export.placement import segments as cut_segments
from aotcc.export.providers import Family, Provider, parse_duration, provider

#: The marked slot for the per-request (dynamic) part: replace this string.
DYNAMIC = "{{AOTCC_DYNAMIC}}"
#: Gemini: replace with the `name` the cachedContents create call returns.
CACHE_NAME = "{{AOTCC_CACHED_CONTENT_NAME}}"
#: The export document's format version.
FORMAT = 1

Artifact = Union[Compiled, str, "os.PathLike[str]"]
#: what a target's builder returns: the requests, the name of the one carrying the
#: static prefix, and the target's extra `cache` fields
Built = tuple[list[dict[str, Any]], str, dict[str, Any]]
Builder = Callable[..., Built]


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
                body: dict[str, Any] = r["body"]
                return body
        raise KeyError(name)

    def to_json(self) -> bytes:
        """Canonical bytes: the same compile and options give the same bytes."""
        return (json.dumps(self.document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write(path, self.to_json())


def compiled_of(artifact: Artifact) -> Compiled:
    if isinstance(artifact, Compiled):
        return artifact
    p = Path(artifact)
    if str(artifact) != "-":
        head = read_input(p)[:8]
        from aotcc.llama.bundle import MAGIC

        if head.startswith(MAGIC):
            raise InputError(
                f"{p}: is a KV bundle (.aotkv), not a compiled prompt; export the .aotc it was made from "
                "(the llama-server target also takes a bundle to write its slot state file)"
            )
    return load(artifact)


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
    _check_options(target, api=api, ttl=ttl, prompt_cache_key=prompt_cache_key, bundle=bundle,
                   breakpoints=breakpoints, model=model, gemini_as=gemini_as, prov=prov, max_tokens=max_tokens,
                   slot=slot, slot_file=slot_file, server=server)
    c = compiled_of(artifact)
    if not c.text:
        raise InputError(f"{c.path or 'artifact'}: the compiled prompt is empty; nothing to cache")
    fam, model_id = prov.family(model)
    counts, tok_fp = _recount(c, tokenizer)
    chunks = chunk_rows(c, counts)
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
    segments = cut_segments(chunks, cuts, c)

    builders: dict[str, Builder] = {"anthropic": _anthropic, "openai": _openai, "gemini": _gemini,
                                    "llama-server": _llama_server}
    builder = builders[target]
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
                   prov: Provider, max_tokens: int | None = None, slot: int = 0, slot_file: str | None = None,
                   server: str | None = None) -> None:
    for name, v, lo, hi in (("--max-tokens", max_tokens, 1, 1 << 20), ("--slot", slot, 0, 1 << 20),
                            ("--breakpoints", breakpoints, 1, 64)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
            raise InputError(f"{name} {v!r}: expected a whole number from {lo} to {hi:,}")
    for name, t in (("--model", model), ("--ttl", ttl), ("--prompt-cache-key", prompt_cache_key),
                    ("--slot-file", slot_file), ("--server", server)):
        if t is not None and not isinstance(t, str):
            raise InputError(f"{name} {t!r}: expected a string")
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


def _anthropic(c: Compiled, prov: Provider, fam: Family, model: str, segments: list[dict[str, Any]],
               warnings: list[str], *, ttl: str | None, max_tokens: int | None, **_: Any) -> Built:
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
            max_tokens: int | None, **_: Any) -> Built:
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
            warnings: list[str], *, ttl: str | None, max_tokens: int | None, gemini_as: str, **_: Any) -> Built:
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
                  slot_file: str | None, server: str | None, max_tokens: int | None, **_: Any) -> Built:
    base = (server or prov.table["endpoint"]).rstrip("/")
    extra: dict[str, Any] = {"slot": slot}
    reqs = []
    prompt: Any = c.text + DYNAMIC
    if bundle is not None:
        from aotcc.llama.bundle import Bundle

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


__all__ = ["CACHE_NAME", "DYNAMIC", "FORMAT", "Artifact", "Export", "export_request"]
