"""`aotcc export`: a compiled prompt as provider request bodies, a cost estimate, and a
stability check; for llama-server also a KV bundle's raw slot-state file.

    aotcc export prompt.aotc --target anthropic -o request.json
    aotcc export prompt.aotc --target openai --estimate --requests-per-day 5000 --dynamic-tokens 300
    aotcc export prompt.aotc --check request.json          # exit 1 if the cached prefix changed
    aotcc export prompt.aotkv --llama-server -o slot.bin   # the state a llama-server slot restores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aotcc._io import check_output_path, escape, show
from aotcc.cli import args as types
from aotcc.errors import CheckFailed, InputError

_TTL_HELP = ("cache lifetime: anthropic 5m (default) or 1h; openai in_memory (default) or 24h, sent as "
             "prompt_cache_retention; gemini a duration such as 3600s (default), 30m, 2h")


def register(sub: argparse._SubParsersAction) -> None:
    from aotcc.export import CACHE_NAME, DYNAMIC

    p = sub.add_parser(
        "export", help="write a compiled prompt as Anthropic, OpenAI, Gemini or llama-server requests (cache-ready)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write an export document (JSON) whose requests[].body put the compiled static prefix where the "
            "provider's prompt cache finds it, with the placeholder " + DYNAMIC + " where the per-request part "
            "goes:\n"
            "  anthropic     system text blocks ending in cache_control breakpoints (at most 4, at chunk\n"
            "                boundaries, each block at least the model family's minimum)\n"
            "  openai        the prefix as the first (system) message or the instructions; dynamic last\n"
            "  gemini        a cachedContents create body and the generateContent body that names it\n"
            "                (replace " + CACHE_NAME + " with the name the create call returns)\n"
            "  llama-server  a /completion body with cache_prompt; with --bundle, the bundle's token ids and\n"
            "                a slot restore request\n\n"
            "--estimate prints tokens and cost per day with and without the cache; --check OLD.json exits 1\n"
            "when a recompile changed bytes inside OLD.json's cached prefix. Given a .aotkv bundle and\n"
            "--llama-server, writes the raw sequence state a llama-server slot restores (as before).\n"
            "Limits and prices come from aotcc/data/providers.toml, each with its source and date."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="compiled prompt (.aotc; - reads stdin), or a .aotkv bundle for the slot state file")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target", choices=["anthropic", "openai", "gemini", "llama-server"], help="the provider")
    g.add_argument("--llama-server", dest="target", action="store_const", const="llama-server",
                   help="same as --target llama-server")
    p.add_argument("--model", metavar="NAME", help="API model id whose limits apply, e.g. claude-sonnet-4-5, gpt-4.1, "
                   "gemini-2.5-flash (default: the provider's default_model in providers.toml)")
    p.add_argument("--api", choices=["chat", "responses"], default="chat", help="openai: Chat Completions (default) or Responses")
    p.add_argument("--ttl", metavar="TTL", help=_TTL_HELP)
    p.add_argument("--prompt-cache-key", metavar="KEY", help="openai: prompt_cache_key, to route requests sharing the prefix together")
    p.add_argument("--breakpoints", type=types.int_range(1, 64), metavar="N", help="anthropic: use at most N cache breakpoints (1-4, default 4)")
    p.add_argument("--max-tokens", type=types.max_tokens, metavar="N", help="answer length limit in the body (anthropic requires one: default 1024)")
    p.add_argument("--tokenizer", metavar="PATH", help="recount each chunk with this HuggingFace tokenizer.json "
                   "(default: the counts stored in the artifact)")
    p.add_argument("--gemini-as", choices=["system", "user"], default="system",
                   help="gemini: cache the prefix as systemInstruction (default) or as a user turn in contents")
    b = p.add_argument_group("llama-server")
    b.add_argument("--bundle", metavar="B.aotkv", help="a KV bundle of this prompt: send its exact token ids and restore its slot first")
    b.add_argument("--slot", type=types.int_range(0, 1 << 20), default=0, metavar="ID", help="slot id (id_slot, /slots/ID; default 0)")
    b.add_argument("--slot-file", metavar="FILE", help="with --bundle: also write the slot state file here; the restore "
                   "request names its basename (it must sit in the server's --slot-save-path)")
    b.add_argument("--server", metavar="URL", help="server base URL in the requests (default http://localhost:8080)")
    e = p.add_argument_group("estimate")
    e.add_argument("--estimate", action="store_true", help="print tokens and cost per day with and without the cache")
    e.add_argument("--requests-per-day", type=types.positive, metavar="N")
    e.add_argument("--dynamic-tokens", type=types.count, metavar="M", help="tokens of the per-request part")
    e.add_argument("--output-tokens", type=types.count, default=0, metavar="K", help="answer tokens per request (default 0)")
    e.add_argument("--price-input", type=types.price, metavar="USD", help="input price per million tokens (default: providers.toml)")
    e.add_argument("--price-output", type=types.price, metavar="USD", help="output price per million tokens")
    e.add_argument("--read-multiplier", type=types.price, metavar="X", help="cache-read price as a multiple of the input price")
    e.add_argument("--storage-price", type=types.price, metavar="USD", help="gemini: cache storage per million tokens per hour")
    p.add_argument("--check", metavar="OLD.json", help="compare with an earlier export: exit 1 if the cached prefix changed "
                   "(names the first differing byte, chunk and terms), 0 if it is identical")
    p.add_argument("--json", action="store_true", help="print the summary, estimate or check result as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=cmd_export)


def _is_bundle(path: str) -> bool:
    if path == "-":
        return False
    from aotcc.llama.bundle import MAGIC

    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def cmd_export(args: argparse.Namespace) -> int:
    if args.input != "-":
        p = Path(args.input)
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if p.is_dir():
            raise InputError(f"{p}: is a directory, not a compiled prompt")
    if args.check:
        return _check(args)
    if args.target is None:
        raise InputError("give --target anthropic|openai|gemini|llama-server (or --check OLD.json)")
    if _is_bundle(args.input):
        if args.target != "llama-server" or args.estimate:
            raise InputError(f"{args.input}: is a KV bundle (.aotkv); export its compiled prompt (.aotc) for "
                             f"{'--estimate' if args.estimate else args.target}, or use --llama-server for its slot state")
        return _slot_state(args)
    if args.estimate:
        return _estimate(args)
    return _document(args)


def _export(args: argparse.Namespace, artifact: Any) -> Any:
    from aotcc.export import export_request

    if args.slot_file and not args.bundle:
        raise InputError("--slot-file needs --bundle B.aotkv (the state it writes comes from the bundle)")
    return export_request(
        artifact, args.target, model=args.model, api=args.api, ttl=args.ttl, prompt_cache_key=args.prompt_cache_key,
        breakpoints=args.breakpoints, max_tokens=args.max_tokens, tokenizer=args.tokenizer, bundle=args.bundle,
        slot=args.slot, slot_file=args.slot_file, server=args.server, gemini_as=args.gemini_as)


def _document(args: argparse.Namespace) -> int:
    if args.json and not args.output:
        raise InputError("--json prints a summary on stdout; give -o FILE for the export document")
    for flag in ("requests_per_day", "dynamic_tokens", "price_input", "price_output", "read_multiplier", "storage_price"):
        if getattr(args, flag) is not None:
            raise InputError(f"--{flag.replace('_', '-')} needs --estimate")
    if args.output:
        check_output_path(args.output)
    if args.slot_file:
        check_output_path(args.slot_file)
    doc = _export(args, args.input)
    data = doc.to_json()
    if args.output:
        from aotcc._io import atomic_write

        atomic_write(args.output, data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    if args.slot_file:
        from aotcc.llama.bundle import export_llama_server

        export_llama_server(args.bundle, args.slot_file)
    d = doc.document
    summary = {
        "output": args.output, "target": d["target"], "family": d["family"]["name"],
        "model": d["options"].get("model"), "static_tokens": d["artifact"]["static_tokens"],
        "tokenizer": d["artifact"]["tokenizer"], "cacheable": d["cache"]["cacheable"],
        "segments": [{"chunks": s["chunks"], "tokens": s["tokens"], "breakpoint": s["breakpoint"]} for s in d["cache"]["segments"]],
        "requests": [r["name"] for r in d["requests"]], "dynamic_placeholder": d["dynamic_placeholder"],
        "slot_file": args.slot_file, "warnings": d["warnings"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        segs = d["cache"]["segments"]
        if d["target"] == "anthropic":
            shape = (f"{len(segs)} system block{'s' * (len(segs) != 1)}, "
                     f"{sum(s['breakpoint'] for s in segs)} cache breakpoints after chunks "
                     + ", ".join(str(s["chunks"][1]) for s in segs if s["breakpoint"]) if d["cache"]["cacheable"]
                     else "1 system block, no breakpoint")
        else:
            shape = " -> ".join(r["name"] for r in d["requests"])
        where = args.output or "stdout"
        print(f"wrote {show(where)}: {d['target']} {d['family']['name']}, {d['artifact']['static_tokens']:,} static tokens "
              f"({d['artifact']['tokenizer']}), {shape}; dynamic slot {d['dynamic_placeholder']}", file=sys.stderr)
    for w in d["warnings"]:
        print(escape(f"aotcc: warning: {w}"), file=sys.stderr)
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from aotcc.export import estimate, export_request

    if args.requests_per_day is None or args.dynamic_tokens is None:
        raise InputError("--estimate needs --requests-per-day N and --dynamic-tokens M")
    doc = export_request(args.input, args.target, model=args.model, api=args.api, ttl=args.ttl,
                         tokenizer=args.tokenizer, gemini_as=args.gemini_as)
    est = estimate(
        args.target, static_tokens=doc.static_tokens, requests_per_day=args.requests_per_day,
        dynamic_tokens=args.dynamic_tokens, output_tokens=args.output_tokens, model=args.model, ttl=args.ttl,
        price_input=args.price_input, price_output=args.price_output, read_multiplier=args.read_multiplier,
        storage_price=args.storage_price)
    out = est.to_dict()
    out["tokenizer"] = doc.document["artifact"]["tokenizer"]
    out["warnings"] = doc.warnings
    if args.json:
        text = json.dumps(out, indent=2) + "\n"
    else:
        text = est.table() + f"  - static tokens counted with {out['tokenizer']}\n"
    if args.output:
        from aotcc._io import atomic_write

        atomic_write(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    for w in doc.warnings:
        print(escape(f"aotcc: warning: {w}"), file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from aotcc.export import check, read_document

    old = read_document(args.check)
    if args.target is not None and args.target != old["target"]:
        raise InputError(f"{args.check}: is a {old['target']} export, not {args.target}")
    if _is_bundle(args.input):
        raise InputError(f"{args.input}: is a KV bundle; --check compares a recompiled .aotc")
    res = check(old, args.input, tokenizer=args.tokenizer, bundle=args.bundle)
    res.message = res.message.replace("OLD:", f"{args.check}:", 1)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0 if res.ok else 1
    if not res.ok:
        raise CheckFailed(res.message)
    print(escape(f"ok: {args.check}: {res.message}"))
    return 0


def _slot_state(args: argparse.Namespace) -> int:
    """The raw llama.cpp sequence-state file of a bundle (`ggsq`), for POST /slots/N?action=restore."""
    from aotcc.llama.bundle import Bundle, export_llama_server

    if not args.output:
        raise InputError("-o FILE is required: the slot state file is binary")
    b = Bundle.open(args.input)
    out = export_llama_server(b, args.output)
    c = b.context
    size = out.stat().st_size
    if not args.quiet:
        print(
            f"wrote {show(out)} ({size / 1e6:.1f} MB, {b.n_tokens:,} tokens). Restore it with a llama-server of llama.cpp "
            f"{escape(b.fingerprint['llama']['llama_cpp'])} started as\n"
            f"  llama-server -m {escape(str(b.fingerprint['model'].get('file')))} --ctx-size {c['n_ctx']} --parallel 1 --swa-full "
            f"--flash-attn {'on' if c['flash_attn'] else 'off'} --cache-type-k {c['type_k']} --cache-type-v {c['type_v']} "
            f"--slot-save-path {show(out.parent.resolve())}\n"
            f"  curl -X POST 'http://localhost:8080/slots/{args.slot}?action=restore' -d '{{\"filename\": \"{show(out.name)}\"}}'",
            file=sys.stderr,
        )
    return 0
