"""`aotcc compile`, `inspect`, `decompile` and `bench`: the compile engine's commands."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aotcc._io import atomic_write, check_output_path, escape, read_input, show
from aotcc.api import compile_with
from aotcc.cli import args as types
from aotcc.compiled import Compiled, load
from aotcc.errors import InputError
from aotcc.options import CompileOptions

STAGES = ["read", "segment", "count", "detect", "chunk", "plan", "rewrite", "emit"]


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--terms", "-t", required=True, metavar="SPEC", help="term spec, TOML or JSON (- for stdin)")
    CompileOptions.add_arguments(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a master prompt and a term spec into a .aotc artifact",
                       description="Compile PROMPT files (concatenated in order; - reads stdin) with a term spec.")
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    _add_compile_options(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.aotc", help="artifact to write (atomically)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.add_argument("--keep-timings", action="store_true",
                   help="store per-stage timings in the artifact (then two compiles differ in those bytes)")
    from aotcc.cli.analyze_cmds import add_compile_flag

    add_compile_flag(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("inspect", help="show chunks, terms, first appearances and token counts of a .aotc",
                       description="Summarize an artifact; --text prints the compiled prompt, --json everything.")
    p.add_argument("artifact", metavar="OUT.aotc")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", action="store_true", help="print the compiled prompt")
    g.add_argument("--json", action="store_true", help="manifest, terms and chunks as JSON")
    p.add_argument("--all", action="store_true", help="list every chunk (default: the first 40)")
    p.add_argument("--tokenizer", metavar="MODEL.gguf",
                   help="report the token cost of the compiled prompt against the source in this model's own "
                        "tokens (default: the model the artifact was compiled with, when it is the default model)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("decompile", help="restore the source of a .aotc byte for byte",
                       description="Write the source the artifact was compiled from, byte for byte.")
    p.add_argument("artifact", metavar="OUT.aotc")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    p.set_defaults(func=cmd_decompile)

    p = sub.add_parser("bench", help="compile throughput per stage on your corpus",
                       description="Time each compile stage (median of --repeat runs) in MB/s and tokens/s. "
                                   "A source checkout makes a synthetic corpus with `python benches/corpus.py DIR`.")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="your corpus, concatenated in order")
    p.add_argument("--terms", "-t", required=True, metavar="SPEC", help="term spec for PROMPT")
    CompileOptions.add_arguments(p)
    p.add_argument("--repeat", type=types.repeat, default=5, metavar="N", help="runs to take the median of (default 5)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_bench)


def _pct(before: int, after: int) -> str:
    return f"{(after - before) / before * 100:+.1f}%" if before else "n/a"


def cmd_compile(args: argparse.Namespace) -> int:
    if args.prompts.count("-") > 1:
        raise InputError("stdin (-) can be read only once")
    if args.output != "-":
        check_output_path(args.output)  # refuse a missing directory before any work
    options = CompileOptions.from_args(args)
    compiler = options.compiler(args.terms)
    sources = [(name, read_input(name)) for name in args.prompts]
    t0 = time.perf_counter()
    if getattr(args, "analyze", None):
        from aotcc.cli.analyze_cmds import run_analysis, summary

        analysis = run_analysis(args, sources, args.analyze)
        compiled = analysis.compiled
        if not args.quiet and not args.json:
            print(summary(analysis), file=sys.stderr)
    else:
        compiled = compile_with(compiler, sources, tokenizer=options.tokenizer)
    data = compiled.to_bytes(timings=args.keep_timings)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(args.output, data)
    elapsed = time.perf_counter() - t0
    m = compiled.manifest
    if args.json:
        print(json.dumps({**m, "output": args.output, "seconds": elapsed}, indent=2))
    elif not args.quiet:
        files = len(args.prompts)
        print(
            f"compiled {files} file{'s' * (files != 1)} ({m['source_bytes']:,} bytes, {m['source_tokens']:,} tokens) "
            f"-> {show(args.output)}: {m['chunks']} chunks, {m['injected']}/{m['terms']} terms injected, "
            f"{m['compiled_tokens']:,} tokens ({_pct(m['source_tokens'], m['compiled_tokens'])}) in {elapsed:.2f} s",
            file=sys.stderr,
        )
    for w in m["warnings"]:
        print(escape(f"aotcc: warning: {w}"), file=sys.stderr)
    return 0


def _preview(text: str, width: int = 46) -> str:
    line = escape(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"


def cmd_inspect(args: argparse.Namespace) -> int:
    c = load(args.artifact)
    if args.text:
        sys.stdout.write(c.text)
        return 0
    m = c.manifest
    model_tokens = _model_tokens(c, args.tokenizer)
    if args.json:
        out = {"manifest": m, "terms": [t.__dict__ | {"depends_on": list(t.depends_on)} for t in c.terms],
               "chunks": c.chunks.to_dict(), "timings": c.timings}
        if model_tokens is not None:
            out["model_tokens"] = model_tokens
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    w = sys.stdout.write
    injected = [t for t in c.terms if t.injected]
    refs = sum(t.references for t in injected)
    tag_costs = sorted(t.tag_tokens for t in injected)
    w(f"{show(args.artifact)}  (aotc v{m['version']}, aotcc {m['aotcc_version']}, hash {c.hash[:16]})\n")
    w(f"  source    {m['source_bytes']:>10,} bytes {m['source_tokens']:>9,} tokens   tokenizer {m['tokenizer']}\n")
    w(f"  compiled  {m['compiled_bytes']:>10,} bytes {m['compiled_tokens']:>9,} tokens   "
      f"{_pct(m['source_tokens'], m['compiled_tokens'])} tokens\n")
    o = m["options"]
    w(f"  chunks    {m['chunks']:>10,}  budget {o['budget']}, placement {o['placement']}, references {o['references']}\n")
    w(f"  terms     {len(injected):>10,} of {m['terms']} injected, {refs:,} references"
      + (f", a tag costs {statistics.median(tag_costs):g} tokens" if tag_costs else "") + "\n")
    if model_tokens is not None:
        _write_model_tokens(w, model_tokens)
    w("\n")

    w(f"  {'id':<6} {'term':<28} {'first chunk':>11} {'uses':>6} {'refs':>6} {'def tok':>7}  note\n")
    needed_by: dict[str, str] = {}  # each term's first dependant, in one pass (not one per term)
    for u in injected:
        for name in u.depends_on:
            needed_by.setdefault(name, u.name)
    for t in sorted(injected, key=lambda t: (t.first_chunk, t.definition_span or (0, 0))):
        note = ""
        if t.pulled_in:
            needer = needed_by.get(t.name)
            note = "pulled in" + (f" by {needer}" if needer else "")
        elif t.depends_on:
            note = "needs " + ", ".join(t.depends_on[:3])
        w(f"  {t.id:<6} {_preview(t.name, 28):<28} {t.first_chunk:>11} {t.occurrences:>6} {t.references:>6} "
          f"{t.definition_tokens:>7}  {note}\n")
    unused = [t.name for t in c.terms if not t.injected]
    if unused:
        w(f"\n  not injected (never mentioned): {', '.join(unused)}\n")

    ch = c.chunks
    starts: dict[int, list[str]] = {}
    for t in sorted(injected, key=lambda t: t.definition_span or (0, 0)):
        starts.setdefault(t.first_chunk, []).append(t.id)  # type: ignore[arg-type]
    n = len(ch)
    shown = n if args.all else min(n, 40)
    source = c.decompile()
    w(f"\n  {'chunk':>5} {'tokens':>7} {'-> out':>7}  {'defines':<14} starts with\n")
    for i in range(shown):
        s, e = int(ch.src_start[i]), int(ch.src_end[i])
        src = source[s:min(e, s + 200)]
        ids = ",".join(starts.get(i, []))
        w(f"  {i:>5} {int(ch.tokens[i]):>7} {int(ch.out_tokens[i]):>7}  {_preview(ids, 14):<14} {_preview(src)}\n")
    if shown < n:
        w(f"  … {n - shown} more chunks (--all lists them)\n")
    for warning in m["warnings"]:
        w(f"\n  warning: {warning}\n")
    return 0


def _model_tokens(c: Compiled, tokenizer: str | None) -> dict[str, object] | None:
    """The model-token report (`counting.model_token_report`) for `--tokenizer`, or for
    the artifact's own GGUF tokenizer when it can be found; None otherwise."""
    from aotcc.counting import find_gguf_for, gguf_tokenizer, model_token_report

    if tokenizer is not None:
        if Path(tokenizer).suffix.lower() != ".gguf":
            raise InputError(f"{tokenizer}: inspect --tokenizer takes the target model's .gguf file")
        return model_token_report(c, gguf_tokenizer(tokenizer))
    found = find_gguf_for(str(c.manifest.get("tokenizer", "")))
    return None if found is None else model_token_report(c, found)


def _write_model_tokens(w: Callable[[str], object], r: dict[str, Any]) -> None:
    """The model-token lines of `aotcc inspect`."""
    src, out = r["source_tokens"], r["compiled_tokens"]
    d, t, mn, tag = r["definition_blocks"], r["reference_tags"], r["replaced_mentions"], r["tag_cost"]
    w(f"\n  model tokens ({Path(str(r['model'])).name}, {r['tokenizer']}; each text tokenized whole)\n")
    w(f"    source    {src:>10,}\n")
    w(f"    compiled  {out:>10,}   {_pct(src, out)} ({out - src:+,})\n")
    w(f"    + {d['count']:,} definition blocks {d['tokens']:,} tokens, + {t['count']:,} reference tags "
      f"{t['tokens']:,} tokens, - {mn['count']:,} replaced mentions {mn['tokens']:,} tokens\n")
    if tag["tag"]:
        w(f"    one reference tag {tag['tag']} costs {tag['tokens']} tokens\n")


def cmd_decompile(args: argparse.Namespace) -> int:
    c = load(args.artifact)
    data = c.source_bytes()
    if args.output:
        atomic_write(args.output, data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmd_bench(args: argparse.Namespace) -> int:
    sources = [(name, read_input(name)) for name in args.prompts]
    corpus = " ".join(args.prompts)
    options = CompileOptions.from_args(args)
    compiler = options.compiler(args.terms)
    size = sum(len(b) for _, b in sources)
    runs: list[dict[str, float]] = []
    walls = []
    compiled: Compiled | None = None
    for i in range(args.repeat):
        t0 = time.perf_counter()
        compiled = compile_with(compiler, sources, tokenizer=options.tokenizer, progress=False)
        walls.append(time.perf_counter() - t0)
        runs.append(compiled.timings)
        print(f"run {i + 1}/{args.repeat}: {walls[-1]:.3f} s", file=sys.stderr)
    assert compiled is not None
    tokens = compiled.manifest["source_tokens"]
    rows: list[dict[str, Any]] = []
    for stage in STAGES:
        secs = statistics.median(r.get(stage, 0.0) for r in runs)
        rows.append({"stage": stage, "seconds": secs,
                     "mb_per_s": size / 1e6 / secs if secs else float("inf"),
                     "tokens_per_s": tokens / secs if secs else float("inf")})
    hot = sum(r["seconds"] for r in rows if r["stage"] in ("detect", "plan", "rewrite"))
    wall = statistics.median(walls)
    result = {
        "corpus": corpus, "bytes": size, "tokens": tokens, "tokenizer": compiled.manifest["tokenizer"],
        "chunks": compiled.manifest["chunks"], "occurrences": compiled.manifest["occurrences"],
        "runs": len(runs), "stages": rows,
        "detect_plan_rewrite": {"seconds": hot, "mb_per_s": size / 1e6 / hot if hot else float("inf")},
        "total": {"seconds": wall, "mb_per_s": size / 1e6 / wall, "tokens_per_s": tokens / wall},
        "peak_rss_mb": _peak_rss_mb(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    w = sys.stdout.write
    w(f"corpus: {corpus}: {size / 1e6:.2f} MB, {tokens:,} tokens ({result['tokenizer']}), "
      f"{result['chunks']:,} chunks, {result['occurrences']:,} occurrences; median of {len(runs)} runs\n\n")
    w(f"  {'stage':<22} {'seconds':>9} {'MB/s':>10} {'Mtokens/s':>10}\n")
    for r in rows:
        w(f"  {r['stage']:<22} {r['seconds']:>9.4f} {r['mb_per_s']:>10.1f} {r['tokens_per_s'] / 1e6:>10.2f}\n")
    d = result["detect_plan_rewrite"]
    w(f"  {'detect+plan+rewrite':<22} {d['seconds']:>9.4f} {d['mb_per_s']:>10.1f}\n")
    t = result["total"]
    w(f"  {'total (wall)':<22} {t['seconds']:>9.4f} {t['mb_per_s']:>10.1f} {t['tokens_per_s'] / 1e6:>10.2f}\n")
    w(f"\n  peak memory {result['peak_rss_mb']:.0f} MB (whole process)\n")
    return 0
