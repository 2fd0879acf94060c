"""Summarizes `make bench`: one throughput table and the goal lines.

Reads the pytest-benchmark JSON (build/bench/results.json, written by benches/conftest.py,
or the path given as the first argument) and criterion's estimates under
target/criterion/stages/, prints a Markdown table, and writes it to
build/bench/report.md along with a log-scale bar chart build/bench/throughput.png.

Throughput is bytes of source per second at the median round (MB = 10^6 bytes). The
ratio columns divide a contender's MB/s by aotcc detect's and by aotcc
detect+plan+rewrite's on the same corpus (below 1: slower than aotcc).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "build" / "bench"
RESULTS = BENCH_DIR / "results.json"
GOAL_MB_S, STRETCH_MB_S = 500.0, 1000.0
GOAL_SECONDS = 1.5
GOAL_RSS_RATIO = 10.0
# Issue 16: aotcc detect (whole-word, leftmost-longest, 2 cores) against Hyperscan on the
# same corpus in the same run: (peer role, corpus, least ratio aotcc MB/s ÷ peer MB/s).
HYPERSCAN_GOALS = (
    ("hyperscan-literal", "1k-terms", 2.0),
    ("hyperscan-literal", "english", 1.0),
    ("hyperscan-boundary", "1k-terms", 3.0),
)
GOAL_ANALYSIS_RATIO = 2.0
CRITERION_GROUP = "rust stages (criterion)"


@dataclass
class Row:
    group: str  # the corpus the ratios are taken within
    contender: str
    nbytes: int | None
    seconds: float
    rounds: int
    notes: list[str] = field(default_factory=list)
    kind: str = "peer"  # aotcc, peer, process, other
    baseline: str | None = None  # "detect" or "dpr": the row the ratios divide by
    role: str | None = None  # extra_info["role"], e.g. "hyperscan-literal"

    @property
    def mb_s(self) -> float | None:
        return self.nbytes / 1e6 / self.seconds if self.nbytes and self.seconds else None


def _fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def _fmt_mb_s(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g}×"


def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} B"


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def load_pytest(path: Path) -> tuple[list[Row], dict, dict]:
    """Rows of the pytest-benchmark results, the benchmarks by role, and machine info."""
    data = json.loads(path.read_text())
    rows: list[Row] = []
    special: dict[str, dict] = {}
    for b in data.get("benchmarks", []):
        info = b.get("extra_info", {})
        stats = b["stats"]
        contender = info.get("contender", b["name"])
        group = info.get("corpus", "other")
        nbytes = info.get("bytes")
        notes = [info["note"]] if info.get("note") else []
        if "occurrences" in info:
            notes.append(f"{info['occurrences']:,} occurrences")
        if "matches" in info:
            notes.append(f"{info['matches']:,} raw matches")
        kind = "aotcc" if contender.startswith("aotcc") else "peer" if "contender" in info else "other"
        role = info.get("role")
        if role == "baseline":
            special["baseline"] = b
            rows.append(Row("processes", contender, None, stats["median"], stats["rounds"],
                            [f"peak RSS {_mb(info['peak_rss_bytes'])}"], "process"))
            continue
        if role == "cli":
            special[f"cli-{info['counter']}"] = b
            rows.append(Row("processes", contender, nbytes, stats["median"], stats["rounds"], [], "process"))
            continue
        if contender.startswith("aotcc.compile() e2e"):
            special["e2e-tokenizer" if "tokenizer.json" in contender else "e2e-estimator"] = b
            notes.append(f"{info['tokens']:,} tokens ({info['tokenizer']})")
            if "tokenizer_vocab" in info:
                notes.append(f"BPE vocab {info['tokenizer_vocab']:,}")
            count = info.get("stage_seconds", {}).get("count")
            if count is not None:
                notes.append(f"count stage {_fmt_seconds(count)}")
        if info.get("suite") == "draft":
            special["draft"] = b
            notes.append(f"recall {info['recall']:.2f} of {info['terms_in_spec']} spec terms "
                         f"({info['recall_without_model']:.2f} without the model, "
                         f"{info['recall_model_proposals']:.2f} from the model's proposals alone); "
                         f"{info['answers_ok']}/{info['answers']} model answers parsed")
            rows.append(Row("analysis (Gemma 3 270M)", contender, None, stats["median"], stats["rounds"], notes, "other"))
            continue
        if info.get("suite") == "analyze":
            special[f"analyze-{info['size']}-{contender}"] = b
            notes.append(f"{info['tokens']:,} tokens; {info['ratio_to_prefill']:.2f}× a prefill timed just before")
            if info.get("stage_seconds"):
                notes.append("stages " + ", ".join(f"{k} {v:.2f} s" for k, v in info["stage_seconds"].items()))
            rows.append(Row("analysis (Gemma 3 270M)", contender, None, stats["median"], stats["rounds"], notes, "other"))
            continue
        baseline = "detect" if info.get("baseline") == "detect" else None
        rows.append(Row(group, contender, nbytes, stats["median"], stats["rounds"], notes, kind, baseline, role))
        if "detect_plan_rewrite_seconds" in info:
            st = info["stage_seconds"]
            rows.append(Row(group, "aotcc detect+plan+rewrite (stage timings)", nbytes,
                            info["detect_plan_rewrite_seconds"], stats["rounds"],
                            [f"median stage timings of `{contender}`: detect {_fmt_seconds(st['detect'])}, "
                             f"plan {_fmt_seconds(st['plan'])}, rewrite {_fmt_seconds(st['rewrite'])}"], "aotcc", "dpr"))
    return rows, special, data.get("machine_info", {})


def load_criterion() -> list[Row]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    base = target / "criterion" / "stages"
    rows = []
    names = {"segment": ("aotcc segment()", None), "detect": ("aotcc Detector::find", "detect"),
             "detect_plan_rewrite": ("aotcc detect+plan+rewrite (stage timings)", "dpr"),
             "compile_estimator": ("aotcc Compiler::compile (Estimator)", None)}
    for key, (label, baseline) in names.items():
        new = base / key / "new"
        try:
            est = json.loads((new / "estimates.json").read_text())
            meta = json.loads((new / "benchmark.json").read_text())
            samples = json.loads((new / "sample.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        nbytes = (meta.get("throughput") or {}).get("Bytes")
        rows.append(Row(CRITERION_GROUP, label, nbytes, est["median"]["point_estimate"] / 1e9,
                        len(samples.get("iters", [])), ["criterion median per iteration"], "aotcc", baseline))
    return rows


def _group_order(group: str) -> tuple[int, str]:
    order = {"1k-terms": 0, "10k-terms": 1, "english": 2, CRITERION_GROUP: 3, "processes": 4}
    return order.get(group, 4), group


def with_ratios(rows: list[Row]) -> list[tuple[Row, float | None, float | None]]:
    """Rows by corpus (aotcc first, then by MB/s), with their ratios to aotcc on that corpus."""
    kinds = {"aotcc": 0, "peer": 1, "process": 2, "other": 3}
    out = []
    for group in sorted(dict.fromkeys(r.group for r in rows), key=_group_order):
        members = sorted((r for r in rows if r.group == group), key=lambda r: (kinds[r.kind], -(r.mb_s or 0)))
        detect = next((r.mb_s for r in members if r.baseline == "detect"), None)
        dpr = next((r.mb_s for r in members if r.baseline == "dpr"), None)
        for r in members:
            ok = r.mb_s is not None and r.kind != "process"
            out.append((r, r.mb_s / detect if ok and detect else None, r.mb_s / dpr if ok and dpr else None))
    return out


def _status(ok: bool) -> str:
    return "met" if ok else "MISSED"


def goals(rows: list[Row], special: dict) -> list[tuple[str, str, str]]:
    out = []
    dprs = [r for r in rows if r.baseline == "dpr" and r.mb_s]
    for r in dprs:
        v = r.mb_s
        status = "stretch met" if v >= STRETCH_MB_S else _status(v >= GOAL_MB_S)
        out.append((f"aotcc detect+plan+rewrite ≥ 500 MB/s (stretch 1 GB/s) [{r.group}]", f"{v:,.0f} MB/s", status))
    for key, label in (("e2e-tokenizer", "tokenizer.json"), ("e2e-estimator", "estimator")):
        if key in special:
            s = special[key]["stats"]["median"]
            out.append((f"e2e aotcc.compile of 4 MB with {label} ≤ 1.5 s", _fmt_seconds(s), _status(s <= GOAL_SECONDS)))
    for role, group, least in HYPERSCAN_GOALS:
        detect = next((r for r in rows if r.group == group and r.baseline == "detect" and r.mb_s), None)
        peer = next((r for r in rows if r.group == group and r.role == role and r.mb_s), None)
        if detect is None or peer is None or not detect.mb_s or not peer.mb_s:
            continue
        ratio = detect.mb_s / peer.mb_s
        out.append((f"aotcc detect ≥ {least:g}× {peer.contender} [{group}]",
                    f"{detect.mb_s:,.0f} vs {peer.mb_s:,.0f} MB/s = {ratio:.2f}×", _status(ratio >= least)))
    for key in sorted(k for k in special if k.startswith("analyze-") and k.endswith(": analyze")):
        info = special[key]["extra_info"]
        r = info["ratio_to_prefill"]
        out.append((f"uncached `aotcc analyze` ≤ {GOAL_ANALYSIS_RATIO:g}× one prefill of the same text [{info['size']}]",
                    f"{r:.2f}× ({info['tokens']:,} tokens)", _status(r <= GOAL_ANALYSIS_RATIO)))
    if "draft" in special:
        info = special["draft"]["extra_info"]
        common = info["common_single_words"]
        out.append(("`analyze --draft-terms` on support_agent.md: recall ≥ 0.7 of its spec, no common single words",
                    f"recall {info['recall']:.2f}; common words: {', '.join(common) or 'none'}",
                    _status(info["recall"] >= 0.7 and not common)))
    base = special.get("baseline", {}).get("extra_info", {}).get("peak_rss_bytes")
    for key, label in (("cli-tokenizer", "tokenizer.json"), ("cli-estimator", "estimator")):
        if key not in special:
            continue
        info = special[key]["extra_info"]
        peak, size = info["peak_rss_bytes"], info["bytes"]
        measured = f"{_mb(peak)} = {peak / size:.1f}× input"
        if base:
            measured += f"; above `import aotcc` ({_mb(base)}): {_mb(peak - base)} = {(peak - base) / size:.1f}×"
        ok_raw = peak <= GOAL_RSS_RATIO * size
        ok_above = base is not None and peak - base <= GOAL_RSS_RATIO * size
        status = _status(ok_raw) if ok_raw or base is None else ("met above baseline only" if ok_above else "MISSED")
        out.append((f"peak RSS of `aotcc compile` CLI ({label}) ≤ 10× input ({_mb(GOAL_RSS_RATIO * size)})",
                    measured, status))
    return out


def render(rows: list[Row], special: dict, machine: dict, results: Path) -> str:
    lines = ["# aotcc benchmarks", ""]
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor") or "?"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines.append(f"Results: `{results.relative_to(ROOT) if results.is_relative_to(ROOT) else results}`; "
                 f"{os.cpu_count()} cores ({cpu}), Python {machine.get('python_version', '?')}"
                 + (f"; load average now {load[0]:.1f}" if load else "")
                 + ". Shared machine: figures are noisy.")
    lines.append("")
    lines.append("MB/s = 10^6 bytes of source per second at the median; ratio = contender MB/s ÷ aotcc's "
                 "on the same corpus (below 1: slower than aotcc).")
    lines.append("")
    lines.append("| corpus | contender | input | median | rounds | MB/s | ÷ aotcc detect | ÷ aotcc detect+plan+rewrite | notes |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r, vs_detect, vs_dpr in with_ratios(rows):
        notes = list(r.notes)
        if r.kind == "process" and "peak_rss_bytes" in _extra(special, r):
            info = _extra(special, r)
            if r.nbytes:
                notes.append(f"peak RSS {_mb(info['peak_rss_bytes'])} ({info['peak_rss_bytes'] / r.nbytes:.1f}× input)")
                notes.append(f"compile inside the process {_fmt_seconds(info['in_process_seconds'])}")
        lines.append(f"| {r.group} | {r.contender} | {_fmt_bytes(r.nbytes)} | {_fmt_seconds(r.seconds)} | {r.rounds} | "
                     f"{_fmt_mb_s(r.mb_s)} | {_fmt_ratio(vs_detect)} | {_fmt_ratio(vs_dpr)} | {'; '.join(notes)} |")
    lines += ["", "| goal | measured | status |", "|---|---|---|"]
    for goal, measured, status in goals(rows, special):
        lines.append(f"| {goal} | {measured} | {status} |")
    return "\n".join(lines) + "\n"


def _extra(special: dict, r: Row) -> dict:
    for b in special.values():
        if b.get("extra_info", {}).get("contender") == r.contender:
            return b["extra_info"]
    return {}


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [r for r, _, _ in with_ratios(rows) if r.mb_s and r.kind != "other"]
    if not bars:
        return
    labels = [f"{r.contender}  [{r.group}]" for r in bars]
    colors = {"aotcc": "#1f77b4", "peer": "#ff7f0e", "process": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(11, 0.38 * len(bars) + 1.6))
    y = range(len(bars))
    ax.barh(list(y), [r.mb_s for r in bars], color=[colors.get(r.kind, "#2ca02c") for r in bars])
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("MB/s (median, log scale)")
    ax.axvline(GOAL_MB_S, color="green", linestyle="--", linewidth=1, label="goal 500 MB/s (detect+plan+rewrite)")
    ax.axvline(STRETCH_MB_S, color="green", linestyle=":", linewidth=1, label="stretch 1 GB/s")
    for i, r in enumerate(bars):
        ax.text(r.mb_s * 1.08, i, _fmt_mb_s(r.mb_s), va="center", fontsize=7)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.38 * len(bars) + 1.6)), ncol=2, fontsize=8)
    ax.set_title("aotcc vs peers: throughput on the generated 4 MB prompt")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else RESULTS
    rows: list[Row] = []
    special: dict = {}
    machine: dict = {}
    if results.exists():
        rows, special, machine = load_pytest(results)
    else:
        print(f"report: {results} not found (run the pytest benches first)", file=sys.stderr)
    rows += load_criterion()
    if not rows:
        print("report: no results", file=sys.stderr)
        return 1
    text = render(rows, special, machine, results)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "report.md").write_text(text)
    chart(rows, BENCH_DIR / "throughput.png")
    sys.stdout.write(text)
    print(f"\nwrote {BENCH_DIR / 'report.md'} and {BENCH_DIR / 'throughput.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
