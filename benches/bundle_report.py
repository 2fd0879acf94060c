"""Prints the KV-bundle tables of `make bench` (benches/bench_bundle.py) and the goal lines.

Reads the pytest-benchmark JSON (build/bench/results.json, or the path given as the
first argument), prints Markdown tables and writes them to build/bench/bundle_report.md.
Times are the median round; the 8k prefills run one round.

Goals: warm time to first token at least 100x faster than cold at 8k tokens; bundle
load at most 1.2x a raw `llama_state_seq_set_data` of the same bytes; `aotcc prefill`
at least 0.95x the tokens/s of llama-cpp-python's `Llama.eval`; a compact bundle at
most 0.5x an exact one at 4k tokens or more; an edit in the last 10% of a 4k prompt
rebuilt (`prefill --from`) at least 5x faster than a full prefill.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "bench" / "results.json"
REPORT = ROOT / "build" / "bench" / "bundle_report.md"
GOAL_TTFT_SPEEDUP = 100.0
GOAL_LOAD_RATIO = 1.2
GOAL_COMPACT_RATIO = 0.5
GOAL_PREFILL_RATIO = 0.95
GOAL_REBUILD_SPEEDUP = 5.0
SIZE_ORDER = ["1k", "4k", "8k"]


def _ms(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB"


def load(path: Path) -> dict[tuple[str, str], dict]:
    """`(test name without params, size)` → {"median", "min", "rounds", **extra_info}."""
    doc = json.loads(path.read_text())
    out: dict[tuple[str, str], dict] = {}
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info", {})
        if info.get("suite") != "bundle":
            continue
        name = b["name"].split("[")[0]
        if name == "test_prefill":  # one test, two contenders
            name = "test_prefill_aotcc" if info.get("contender") == "aotcc prefill" else "test_prefill_llama_cpp_eval"
        elif name == "test_rebuild_after_late_edit":  # full or incremental
            name = f"test_rebuild_{str(info.get('contender', '')).split()[-1]}"
        out[(name, info["size"])] = {"median": b["stats"]["median"], "min": b["stats"]["min"],
                                     "rounds": b["stats"]["rounds"], **info}
    return out


def report(rows: dict[tuple[str, str], dict]) -> str:
    sizes = [s for s in SIZE_ORDER if any(k[1] == s for k in rows)]
    lines: list[str] = []
    goals: list[str] = []
    get = rows.get

    lines += ["### Time to first token: cold prefill vs warm bundle (32-token query)", "",
              "| prompt | tokens | cold | warm (load + query) | speedup |", "|---|---:|---:|---:|---:|"]
    for s in sizes:
        cold, warm = get(("test_ttft_cold", s)), get(("test_ttft_warm", s))
        if cold and warm:
            x = cold["median"] / warm["median"]
            lines.append(f"| {s} | {cold['tokens']:,} | {_ms(cold['median'])} | {_ms(warm['median'])} | {x:,.0f}x |")
            if s == "8k":
                goals.append(f"TTFT speedup at 8k: {x:,.0f}x (goal ≥ {GOAL_TTFT_SPEEDUP:.0f}x) "
                             f"{'MET' if x >= GOAL_TTFT_SPEEDUP else 'NOT MET'}")

    lines += ["", "### Load: bundle (checks + checksum + restore) vs raw llama_state_seq_set_data of the same bytes", "",
              "| prompt | state | aotcc Runtime.load | raw set_data | ratio |", "|---|---:|---:|---:|---:|"]
    worst = None
    for s in sizes:
        a, r = get(("test_load_bundle", s)), get(("test_load_raw_set_data", s))
        if a and r:
            x = a["median"] / r["median"]
            worst = x if worst is None else max(worst, x)
            lines.append(f"| {s} | {_mb(r.get('bytes'))} | {_ms(a['median'])} | {_ms(r['median'])} | {x:.2f}x |")
    if worst is not None:
        goals.append(f"bundle load / raw set_data, worst size: {worst:.2f}x (goal ≤ {GOAL_LOAD_RATIO}x) "
                     f"{'MET' if worst <= GOAL_LOAD_RATIO else 'NOT MET'}")

    lines += ["", "### Bundle size, in bytes per prompt token (file size in brackets)", "",
              "| prompt | tokens | stock slot save | compact f16 | exact f16 | compact q8_0 | q8_0 + zstd | compact / exact |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        p = get(("test_prefill_aotcc", s))
        if p and "sizes" in p:
            z, n = p["sizes"], p["tokens"]

            def cell(k: str, z: dict = z, n: int = n) -> str:
                return f"{z[k] / n:,.0f} ({_mb(z[k])})" if z.get(k) else "–"

            ratio = z["compact_f16"] / z["exact_f16"] if z.get("exact_f16") else float("nan")
            lines.append(f"| {s} | {n:,} | {cell('slot_save')} | {cell('compact_f16')} | {cell('exact_f16')} | "
                         f"{cell('compact_q8_0')} | {cell('compact_q8_0_zstd')} | {ratio:.2f} |")
            if s in ("4k", "8k"):
                goals.append(f"compact / exact bundle at {s}: {ratio:.2f}x (goal ≤ {GOAL_COMPACT_RATIO}x) "
                             f"{'MET' if ratio <= GOAL_COMPACT_RATIO else 'NOT MET'}")

    lines += ["", "### Prefill throughput: aotcc prefill vs llama_cpp Llama.eval (same build, same settings)", "",
              "| prompt | tokens | aotcc prefill (whole) | of which decode | Llama.eval | ratio (whole) | ratio (decode) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    worst = None
    for s in sizes:
        a, r = get(("test_prefill_aotcc", s)), get(("test_prefill_llama_cpp_eval", s))
        if a and r:
            n = a["tokens"]
            whole, dec, raw = n / a["median"], n / a.get("decode_s", a["median"]), n / r["median"]
            worst = whole / raw if worst is None else min(worst, whole / raw)
            lines.append(f"| {s} | {n:,} | {whole:,.0f} tok/s | {dec:,.0f} tok/s | {raw:,.0f} tok/s | "
                         f"{whole / raw:.2f}x | {dec / raw:.2f}x |")
    if worst is not None:
        goals.append(f"aotcc prefill / Llama.eval, worst size: {worst:.2f}x (goal ≥ {GOAL_PREFILL_RATIO}x) "
                     f"{'MET' if worst >= GOAL_PREFILL_RATIO else 'NOT MET'}")

    full, inc = next(((get(("test_rebuild_full", s)), get(("test_rebuild_incremental", s))) for s in reversed(sizes)
                      if get(("test_rebuild_full", s)) and get(("test_rebuild_incremental", s))), (None, None))
    if full and inc:
        x = full["median"] / inc["median"]
        lines += ["", "### Rebuild after an edit in the last 10% of the prompt: prefill --from OLD vs a full prefill", "",
                  "| prompt | tokens | reused | full prefill | incremental | speedup |", "|---|---:|---:|---:|---:|---:|",
                  f"| {full['size']} | {full['tokens']:,} | {inc.get('reused', 0):,} | {_ms(full['median'])} | "
                  f"{_ms(inc['median'])} | {x:.1f}x |"]
        goals.append(f"incremental rebuild at {full['size']}: {x:.1f}x faster than a full prefill "
                     f"(goal ≥ {GOAL_REBUILD_SPEEDUP:.0f}x) {'MET' if x >= GOAL_REBUILD_SPEEDUP else 'NOT MET'}")

    lines += ["", "### Goals", ""] + [f"- {g}" for g in goals]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else RESULTS
    if not path.exists():
        print(f"bundle_report: {path}: no benchmark results (run `make bench`)", file=sys.stderr)
        return 2
    rows = load(path)
    if not rows:
        print(f"bundle_report: {path}: no KV-bundle benchmarks in it", file=sys.stderr)
        return 2
    text = report(rows)
    print(text, end="")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
