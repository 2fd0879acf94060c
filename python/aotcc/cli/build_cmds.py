"""`aotcc build`: many prompts × models from one manifest; only what changed is rebuilt."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aotcc.errors import InputError


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256, got {n}")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build", help="compile, prefill and export a manifest of prompts x models; rebuild only what changed",
        description=(
            "Build every output a manifest asks for: a compiled prompt per prompt, a KV bundle per prompt and model, "
            "request bodies per hosted cache. A lock file (OUTDIR/build.lock.json) records each output's input "
            "hashes: a rerun with nothing changed does no model work, and an edited prompt is prefilled again only "
            "from its first changed batch of tokens. --ray runs the jobs on a Ray cluster with identical outputs."
        ),
        epilog="The manifest's format is in docs/build.md. Exit 1 when an output failed (the others are built).",
    )
    p.add_argument("manifest", metavar="MANIFEST.toml")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="where the outputs and the lock go")
    p.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the jobs on Ray: a local cluster (no ADDRESS), `auto`, or ray://host:port")
    p.add_argument("--json", action="store_true", help="print each output's status and timings as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-output lines on stderr")
    p.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aotcc.build import build, load_manifest

    manifest = load_manifest(args.manifest)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    t0 = time.perf_counter()
    n = 0

    def report(row: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        if args.quiet or args.json:
            return
        what = row["status"]
        if row.get("reused_tokens"):
            what += f" ({row['reused_tokens']:,} of {row['tokens']:,} tokens restored)"
        if row.get("error"):
            what += f": {row['error']}"
        print(f"aotcc: [{n}] {row['id']}: {what} ({row.get('seconds', 0):.1f} s)", file=sys.stderr, flush=True)

    rows = build(manifest, out, jobs=args.jobs, ray=args.ray, report=report)
    failed = [r for r in rows if r["status"] in ("failed", "skipped")]
    if args.json:
        print(json.dumps({"outputs": rows, "seconds": round(time.perf_counter() - t0, 3), "failed": len(failed)},
                         indent=2))
    elif not args.quiet:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        print(f"built {out}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
              + f" in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 1 if failed else 0
