"""Reporting an eval record: the stdout table (accuracy per topology, position and
length; per depth; paired tests between topologies) and the PNG plot of accuracy
against context length (one panel per position, one line per topology with its Wilson
95% band, the raw control dotted, uniform chance dashed).

The plot is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas, never
through pyplot, so it needs no display and leaves no global figure state behind.
"""

from __future__ import annotations

import io
import os
from typing import Any

from aotcc._io import atomic_write
from aotcc.errors import AotccError
from aotcc.evaluate.stats import wilson


def cells(record: dict[str, Any], position: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per topology, one point per context length (cases of the same length pooled),
    sorted by length, for one position (default: the first)."""
    position = position or record["settings"].get("positions", ["end"])[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for topo in record["settings"]["topologies"]:
        by_len: dict[int, list[dict[str, Any]]] = {}
        for r in record["runs"]:
            if r["topology"] == topo and r.get("position", "end") == position:
                by_len.setdefault(int(r["length"]), []).append(r)
        pts = []
        for length in sorted(by_len):
            rs = by_len[length]
            k, n = sum(r["correct"] for r in rs), sum(r["n"] for r in rs)
            lo, hi = wilson(k, n)
            raw = [r["raw_tokens"] for r in rs if r["raw_tokens"]]
            pt = {
                "length": length, "n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": (lo, hi),
                "tokens": sum(r["tokens"] for r in rs) / len(rs),
                "raw_tokens": sum(raw) / len(raw) if len(raw) == len(rs) else None,
                "compile_s": sum(r["compile_s"] for r in rs), "prefill_s": sum(r["prefill_s"] for r in rs),
                "margin": sum((r["mean_margin"] or 0.0) * r["n"] for r in rs) / n if n else 0.0,
                "leaks": sum(r["leaks"] for r in rs),
            }
            if all("gen_correct" in r for r in rs):
                g = sum(r["gen_correct"] for r in rs)
                pt.update(gen_accuracy=g / n if n else 0.0, gen_tags=sum(r["gen_tags"] for r in rs))
            pts.append(pt)
        out[topo] = pts
    return out


def _k(n: float) -> str:
    return f"{n / 1024:g}k" if n >= 1024 and n % 256 == 0 else f"{n:g}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def format_table(record: dict[str, Any]) -> str:
    """The result table: one row per topology, position and length; then accuracy over
    all lengths by depth; then the paired tests."""
    m = record["model"]
    s = record["suite"]
    st = record["settings"]
    positions = st.get("positions", ["end"])
    gen = bool(st.get("generate"))
    lines = [
        f"aotcc eval: suite {s['name']} ({s['questions_per_topology']} questions per topology and position, "
        f"chance {record['chance']:.3f}), model {m.get('file')}, compiled with {st.get('tokenizer', 'estimator')}, "
        f"{record['seconds']:.0f} s",
        "",
        f"{'topology':<15} {'pos':<4} {'length':>6} {'tokens':>7} {'+tokens':>8} {'prefill':>8} "
        f"{'acc':>6}  {'95% CI':<14} {'n':>4} {'margin':>7}" + (f" {'gen':>6} {'tags':>5}" if gen else ""),
    ]
    for pos in positions:
        for topo, pts in cells(record, pos).items():
            for p in pts:
                extra = "—" if topo == "raw" or not p["raw_tokens"] else f"{p['tokens'] / p['raw_tokens'] - 1:+.1%}"
                lo, hi = p["ci95"]
                row = (f"{topo:<15} {pos:<4} {_k(p['length']):>6} {p['tokens']:>7,.0f} {extra:>8} "
                       f"{p['prefill_s']:>7.2f}s {p['accuracy']:>6.3f}  [{lo:.3f}, {hi:.3f}] {p['n']:>4} {p['margin']:>+7.3f}")
                if gen:
                    row += f" {p.get('gen_accuracy', 0.0):>6.3f} {p.get('gen_tags', 0):>5}"
                if p["leaks"]:
                    row += f"  ({p['leaks']} answers also outside their definition)"
                lines.append(row)
    summ = record["summary"]
    bins = ["early", "middle", "late"]
    lines += ["", f"{'all lengths':<15} {'pos':<4} {'acc':>6}  {'95% CI':<14}" + "".join(f" {b:>7}" for b in bins)
              + f" {'no-leak':>8} {'acc/ktok':>9}" + (f" {'gen':>6}" if gen else "")]
    for topo, v in summ.items():
        for pos in positions:
            e = v.get(pos)
            if not e:
                continue
            lo, hi = e["ci95"]
            row = f"{topo:<15} {pos:<4} {e['accuracy']:>6.3f}  [{lo:.3f}, {hi:.3f}]"
            for b in bins:
                d = e["by_depth"].get(b)
                row += f" {d['accuracy']:>7.3f}" if d else f" {'':>7}"
            row += f" {e['no_leak']['accuracy']:>8.3f}" if e["no_leak"]["n"] else f" {'':>8}"
            row += f" {v.get('accuracy_per_ktoken', 0.0):>9.4f}" if pos == positions[0] else f" {'':>9}"
            if gen and "generation" in e:
                row += f" {e['generation']['accuracy']:>6.3f}"
            lines.append(row)
    tests = record.get("paired", [])
    if tests:
        lines += ["", "paired tests (same questions): a-only / b-only are the discordant questions; diff = acc(a) - acc(b) "
                      "with a paired-bootstrap 95% interval; p = exact McNemar",
                  f"{'a':<15} {'b':<15} {'pos':<4} {'metric':<10} {'n':>4} {'a-only':>6} {'b-only':>6} {'diff':>7}  "
                  f"{'95% CI':<16} {'p':>8}"]
        for t in tests:
            lines.append(f"{t['a']:<15} {t['b']:<15} {t['position']:<4} {t['metric']:<10} {t['n']:>4} {t['only_a']:>6} "
                         f"{t['only_b']:>6} {t['diff']:>+7.3f}  [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}] {_p(t['p_mcnemar']):>8}")
    lines += ["", "acc: share of questions whose right answer has the highest mean log-probability per token; margin: right "
                  "minus best wrong (nats/token); depth: where the term first appears (early/middle/late third); "
                  "no-leak: questions whose answer occurs only in its definition; acc/ktok: accuracy per 1,000 prompt "
                  "tokens" + ("; gen: the greedy answer (tags cleaned) names the right value first; tags: reference "
                              "tags the model wrote" if gen else "") + "."]
    return "\n".join(lines) + "\n"


def plot(record: dict[str, Any], path: str | os.PathLike[str]) -> list[str]:
    """Write the accuracy-vs-length PNG to `path` (atomically); returns the topology
    line labels in drawing order (of the first panel)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise AotccError("--plot needs matplotlib (pip install 'aotcc[llama]' brings it)") from None
    positions = record["settings"].get("positions", ["end"])
    fig = Figure(figsize=(6.2 * len(positions) + 1.2, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    labels: list[str] = []
    for i, pos in enumerate(positions):
        ax = fig.add_subplot(1, len(positions), i + 1)
        by = cells(record, pos)
        lengths = sorted({p["length"] for pts in by.values() for p in pts})
        for topo, pts in by.items():
            x = [p["length"] for p in pts]
            y = [p["accuracy"] for p in pts]
            style: dict[str, Any] = {"linestyle": ":", "color": "0.35", "marker": "x"} if topo == "raw" else {"marker": "o"}
            (line,) = ax.plot(x, y, linewidth=1.8, label=topo + (" (no definitions)" if topo == "raw" else ""), **style)
            ax.fill_between(x, [p["ci95"][0] for p in pts], [p["ci95"][1] for p in pts], color=line.get_color(),
                            alpha=0.08 if topo == "raw" else 0.12)
            if i == 0:
                labels.append(topo)
        ax.axhline(record["chance"], color="grey", linestyle="--", linewidth=1)
        ax.text(lengths[0] if lengths else 0, record["chance"], " uniform chance", va="bottom", ha="left",
                color="grey", fontsize=8)
        if len(lengths) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(lengths)
        ax.set_xticklabels([_k(n) for n in lengths])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.set_xlabel("context length (source tokens)")
        ax.set_ylabel("accuracy (95% Wilson band)")
        where = "after the whole prompt" if pos == "end" else "right after the term's first-appearance chunk"
        ax.set_title(f"asked {where}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    n = record["suite"]["questions_per_topology"]
    fig.suptitle(f"{record['suite']['name']}: {record['model'].get('file')}, {n} questions per topology", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return labels


__all__ = ["cells", "format_table", "plot"]
