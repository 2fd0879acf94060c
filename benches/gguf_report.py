"""Summarizes the exact-count benchmarks (benches/test_gguf_count.py): Gemma 3 token
counts of the 4 MB prompt by aotcc's GGUF tokenizer against llama.cpp and HF
`tokenizers`, with ratios, and the issue's goal lines. Reads the pytest-benchmark JSON
(build/bench/results.json or the first argument); writes build/bench/gguf_report.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "bench" / "results.json"


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else RESULTS
    if not path.exists():
        print(f"gguf_report: {path} not found (run the pytest benches first)", file=sys.stderr)
        return 1
    by_role: dict[str, dict] = {}
    for b in json.loads(path.read_text()).get("benchmarks", []):
        role = b.get("extra_info", {}).get("role", "")
        if role.startswith("gguf-"):
            by_role[role] = b
    if "gguf-aotcc" not in by_role:
        print("gguf_report: no aotcc GGUF count results", file=sys.stderr)
        return 1

    def mb_s(role: str) -> float | None:
        b = by_role.get(role)
        return b["extra_info"]["bytes"] / 1e6 / b["stats"]["median"] if b else None

    ours = mb_s("gguf-aotcc")
    lines = ["# Exact Gemma 3 token counts (4 MB synthetic prompt)", "",
             "| contender | median | MB/s | aotcc ÷ contender |", "|---|---:|---:|---:|"]
    for role in ("gguf-aotcc", "gguf-recount", "gguf-llama-para", "gguf-llama-whole", "gguf-hf-peer",
                 "gguf-e2e", "gguf-cli"):
        b = by_role.get(role)
        if not b:
            continue
        v = mb_s(role)
        ratio = f"{ours / v:.1f}×" if v and role not in ("gguf-aotcc", "gguf-recount", "gguf-e2e", "gguf-cli") else "–"
        lines.append(f"| {b['extra_info']['contender']} | {b['stats']['median']:.3f} s | {v:.2f} | {ratio} |")
    lines += ["", "| goal | measured | status |", "|---|---|---|"]
    lines.append(f"| exact Gemma counts ≥ 5 MB/s | {ours:.1f} MB/s | {'met' if ours >= 5 else 'MISSED'} |")
    for role, label, factor in (("gguf-llama-para", "per paragraph, 2 threads", 5), ("gguf-llama-whole", "whole text", 25)):
        v = mb_s(role)
        if v:
            lines.append(f"| ≥ {factor}× llama.cpp {label} | {ours / v:.1f}× | {'met' if ours / v >= factor else 'MISSED'} |")
    # issue 4: the compile within 1.5 s; issue 16: the whole CLI process within 0.5 s
    for role, label, goal in (("gguf-e2e", "aotcc.compile() with gemma.gguf", 1.5),
                              ("gguf-cli", "`aotcc compile --tokenizer gemma.gguf`, whole process", 0.5)):
        b = by_role.get(role)
        if b:
            s = b["stats"]["median"]
            lines.append(f"| {label} ≤ {goal:g} s | {s:.2f} s | {'met' if s <= goal else 'MISSED'} |")
    text = "\n".join(lines) + "\n"
    out = path.parent / "gguf_report.md"
    out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
