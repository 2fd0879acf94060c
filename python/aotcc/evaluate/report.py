"""Reporting an eval record: the stdout table, and the PNG plot of accuracy against
context length (one line per topology, its Wilson 95% band shaded around it).

The plot is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas, never
through pyplot, so it needs no display and leaves no global figure state behind.
"""

from __future__ import annotations

import io
import os
from typing import Any

from aotcc._io import atomic_write
from aotcc.evaluate.scoring import wilson


def cells(record: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per topology, one point per context length (cases of the same length pooled),
    sorted by length: length, n, correct, accuracy, ci95, tokens (mean), times (sums)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for topo in record["settings"]["topologies"]:
        by_len: dict[int, list[dict[str, Any]]] = {}
        for r in record["runs"]:
            if r["topology"] == topo:
                by_len.setdefault(int(r["length"]), []).append(r)
        pts = []
        for length in sorted(by_len):
            rs = by_len[length]
            k, n = sum(r["correct"] for r in rs), sum(r["n"] for r in rs)
            lo, hi = wilson(k, n)
            raw = [r["raw_tokens"] for r in rs if r["raw_tokens"]]
            pts.append({
                "length": length, "n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": (lo, hi),
                "tokens": sum(r["tokens"] for r in rs) / len(rs),
                "raw_tokens": sum(raw) / len(raw) if len(raw) == len(rs) else None,
                "compile_s": sum(r["compile_s"] for r in rs), "prefill_s": sum(r["prefill_s"] for r in rs),
                "score_s": sum(r["score_s"] for r in rs),
                "margin": sum(r["mean_margin"] * r["n"] for r in rs) / n if n else 0.0,
                "leaks": sum(r["leaks"] for r in rs),
            })
        out[topo] = pts
    return out


def _k(n: float) -> str:
    return f"{n / 1024:g}k" if n >= 1024 and n % 256 == 0 else f"{n:g}"


def format_table(record: dict[str, Any]) -> str:
    """The result table: one row per topology and length, then accuracy by depth."""
    m = record["model"]
    s = record["suite"]
    lines = [
        f"aotcc eval: suite {s['name']} ({s['questions_per_topology']} questions per topology, chance {record['chance']:.3f}), "
        f"model {m.get('file')}, {record['seconds']:.0f} s",
        "",
        f"{'topology':<15} {'length':>6} {'tokens':>7} {'+tokens':>8} {'compile':>8} {'prefill':>8} "
        f"{'acc':>6}  {'95% CI':<14} {'n':>4} {'margin':>7}",
    ]
    by = cells(record)
    for topo, pts in by.items():
        for p in pts:
            extra = "—" if topo == "raw" or not p["raw_tokens"] else f"{p['tokens'] / p['raw_tokens'] - 1:+.1%}"
            lo, hi = p["ci95"]
            lines.append(
                f"{topo:<15} {_k(p['length']):>6} {p['tokens']:>7,.0f} {extra:>8} {p['compile_s']:>7.3f}s "
                f"{p['prefill_s']:>7.2f}s {p['accuracy']:>6.3f}  [{lo:.3f}, {hi:.3f}] {p['n']:>4} {p['margin']:>+7.3f}"
                + (f"  ({p['leaks']} leaked)" if p["leaks"] else "")
            )
    summ = record["summary"]
    depths = sorted({d for v in summ.values() for d in v["by_depth"]}, key=float)
    lines += ["", f"{'all lengths':<15} {'acc':>6}  {'95% CI':<14}" + "".join(f" {'depth ' + d:>21}" for d in depths)]
    for topo, v in summ.items():
        lo, hi = v["ci95"]
        row = f"{topo:<15} {v['accuracy']:>6.3f}  [{lo:.3f}, {hi:.3f}]"
        for d in depths:
            b = v["by_depth"].get(d)
            row += f" {b['accuracy']:>6.3f} [{b['ci95'][0]:.2f}, {b['ci95'][1]:.2f}]" if b else f" {'':>21}"
        lines.append(row)
    lines += ["", "acc: share of questions whose right answer has the highest mean log-probability per token; "
                  "margin: right minus best wrong (nats/token); depth: where the term first appears (0 start, 1 end)."]
    return "\n".join(lines) + "\n"


def plot(record: dict[str, Any], path: str | os.PathLike[str]) -> list[str]:
    """Write the accuracy-vs-length PNG to `path` (atomically); returns the topology
    line labels in drawing order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by = cells(record)
    fig = Figure(figsize=(7.5, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lengths = sorted({p["length"] for pts in by.values() for p in pts})
    labels = []
    for topo, pts in by.items():
        x = [p["length"] for p in pts]
        y = [p["accuracy"] for p in pts]
        (line,) = ax.plot(x, y, marker="o", linewidth=1.8, label=topo)
        ax.fill_between(x, [p["ci95"][0] for p in pts], [p["ci95"][1] for p in pts], color=line.get_color(), alpha=0.12)
        labels.append(topo)
    ax.axhline(record["chance"], color="grey", linestyle="--", linewidth=1)
    ax.text(lengths[0] if lengths else 0, record["chance"], " chance", va="bottom", ha="left", color="grey", fontsize=8)
    if len(lengths) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([_k(n) for n in lengths])
    ax.minorticks_off()
    ax.set_ylim(0, 1)
    ax.set_xlabel("context length (source tokens)")
    ax.set_ylabel("accuracy (95% Wilson band)")
    n = max((p["n"] for pts in by.values() for p in pts), default=0)
    ax.set_title(f"{record['suite']['name']}: {record['model'].get('file')}, n={n} per point", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return labels


__all__ = ["cells", "format_table", "plot"]
