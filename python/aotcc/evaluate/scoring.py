"""Running a suite: compile each topology of each case, prefill it once as a root
sequence, and score every question in forks of that root by the model's
length-normalised log-likelihood of each candidate answer.

A question counts as right only when the right answer's mean log-probability per token
is strictly above every wrong candidate's (a tie is wrong), so a model that scores all
candidates alike cannot look better than chance. Accuracy comes with a Wilson 95%
interval, which stays inside [0, 1] and is honest at the small n a suite has.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from aotcc.errors import InputError
from aotcc.evaluate.cases import Case, Question, Suite, answer_leaks

#: topology name -> (placement, references) for `aotcc.compile`; None: the source as is
TOPOLOGIES: dict[str, tuple[str, str] | None] = {
    "raw": None,  # no compile: the master prompt without any definition (a chance-level control)
    "top": ("top", "keep"),  # the classic layout: all definitions stacked on top, text untouched
    "top-tag": ("top", "tag"),
    "chunk-tag": ("chunk", "tag"),  # aotcc: definitions inline at first appearance, later mentions tagged
    "chunk-annotate": ("chunk", "annotate"),  # inline, later mentions keep the word and add the tag
    "chunk-keep": ("chunk", "keep"),
}
DEFAULT_TOPOLOGIES = ("raw", "top", "chunk-tag", "chunk-annotate")
_Z95 = 1.959963984540054

Progress = Callable[[float, float, str, str], None]


def parse_topologies(names: str | Sequence[str]) -> list[str]:
    """Topology names from `raw,top,...` (or a list); an unknown name is an error listing the known ones."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise InputError("--topologies: no topology given")
    for n in items:
        if n not in TOPOLOGIES:
            raise InputError(f"unknown topology {n!r}; known: {', '.join(TOPOLOGIES)}")
    if len(set(items)) != len(items):
        raise InputError("--topologies: a topology is listed twice")
    return items


def wilson(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends, not rounding noise
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def topology_text(case: Case, topology: str, *, budget: int = 512) -> tuple[str, dict[str, tuple[int, int]], float]:
    """The prompt text of `case` in `topology`, each term's definition span in it, and the compile time."""
    mode = TOPOLOGIES[topology]
    if mode is None:
        return case.prompt, {}, 0.0
    import aotcc

    t = time.perf_counter()
    c = aotcc.compile(case.prompt, case.terms, budget=budget, placement=mode[0], references=mode[1], progress=False)
    elapsed = time.perf_counter() - t
    spans = {ti.name: ti.definition_span for ti in c.terms if ti.definition_span is not None}
    return c.text, spans, elapsed


def query(question: Question, templated: bool) -> tuple[str, list[str]]:
    """The text appended after the prompt and the candidate continuations. Plain bundles
    get `Question: …\\nAnswer:` and candidates with a leading space (how the answer
    would continue); template bundles get the question as the user turn."""
    if templated:
        return question.ask, list(question.candidates)
    return f"\n\nQuestion: {question.ask}\nAnswer:", [" " + c for c in question.candidates]


def score_question(root: Any, question: Question) -> dict[str, Any]:
    """Score one question in forks of `root` (an `aotcc.Session`); the root is untouched."""
    prompt, conts = query(question, root.template is not None)
    scores = root.score(prompt, conts)
    means = [s.mean for s in scores]
    right, wrong = means[0], means[1:]
    best = max(range(len(means)), key=lambda i: (means[i], -i))
    return {
        "question": question.id,
        "term": question.term,
        "kind": question.kind,
        "depth": question.depth,
        "answer": question.answer,
        "chosen": question.candidates[best],
        "correct": bool(right > max(wrong)),
        "scores": [round(m, 5) for m in means],
        "tokens": [s.n_tokens for s in scores],
        "margin": round(right - max(wrong), 5),
    }


def _stage(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    """`progress` for one prefill, as `(done, total)`."""
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(done, total, label, "tok")


def evaluate(
    suite: Suite,
    *,
    model: str | os.PathLike[str] | None = None,
    topologies: Sequence[str] = DEFAULT_TOPOLOGIES,
    budget: int = 512,
    chat_template: str | None = None,
    n_threads: int | None = None,
    score_threads: int = 1,
    progress: Progress | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    runtime: Any = None,
) -> dict[str, Any]:
    """Run every (case, topology) of `suite` and return the record (see docs/eval.md).

    Each topology's prompt is prefilled once into a root sequence; its questions are
    scored in forks of it, so the prompt is never decoded twice. Prefill runs on
    `n_threads`; scoring decodes only a few tokens at a time, where a second thread
    hardly pays and stalls every step on a busy machine, so it runs on `score_threads`.
    `chat_template` ("auto"
    or a llama.cpp template name) wraps the prompt as the system turn and each question
    as a user turn. `progress(done, total, label, unit)` is called during prefill and
    scoring; `on_run(run)` after each (case, topology).
    """
    from aotcc import __version__
    from aotcc.llama.runtime import Runtime

    topologies = parse_topologies(list(topologies))
    rt = runtime if runtime is not None else Runtime(model, n_threads=n_threads, max_sessions=4)
    runs: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        for case in suite.cases:
            raw_tokens = None
            for topo in topologies:
                text, spans, compile_s = topology_text(case, topo, budget=budget)
                label = f"{topo} {case.id}"
                t = time.perf_counter()
                root = rt.cold(text, chat_template=chat_template, progress=_stage(progress, f"prefill {label}"))
                prefill_s = time.perf_counter() - t
                n_tokens = root.n_past
                if topo == "raw":
                    raw_tokens = n_tokens
                leaks = 0
                rows = []
                t = time.perf_counter()
                with rt.batch_threads(score_threads):
                    for i, q in enumerate(case.questions):
                        if answer_leaks(q, text, spans.get(q.term)):
                            leaks += 1
                        row = score_question(root, q)
                        row.update(topology=topo, case=case.id, length=case.length)
                        rows.append(row)
                        if progress:
                            progress(i + 1, len(case.questions), f"score {label}", "questions")
                score_s = time.perf_counter() - t
                k = sum(r["correct"] for r in rows)
                n = len(rows)
                lo, hi = wilson(k, n)
                run = {
                    "topology": topo, "case": case.id, "length": case.length if case.length is not None else n_tokens,
                    "tokens": n_tokens, "raw_tokens": raw_tokens,
                    "compile_s": round(compile_s, 6), "prefill_s": round(prefill_s, 4),
                    "prefill_tok_s": round(n_tokens / prefill_s, 1) if prefill_s > 0 else None,
                    "score_s": round(score_s, 4), "n": n, "correct": k, "accuracy": k / n if n else 0.0,
                    "ci95": [round(lo, 4), round(hi, 4)],
                    "mean_margin": round(sum(r["margin"] for r in rows) / n, 5) if n else None,
                    "leaks": leaks,
                }
                runs.append(run)
                questions += rows
                if on_run is not None:
                    on_run(run)
        model_fields = rt.model_fields()
    finally:
        if runtime is None:
            rt.close()
    # relative token cost against raw, once raw is known for the case (it may come later in the list)
    raw_by_case = {r["case"]: r["tokens"] for r in runs if r["topology"] == "raw"}
    for r in runs:
        r["raw_tokens"] = raw_by_case.get(r["case"])
    chance = sum(1 / len(q.candidates) for c in suite.cases for q in c.questions) / max(1, suite.n_questions)
    return {
        "format": "aotcc-eval-record/1",
        "aotcc_version": __version__,
        "suite": {
            "name": suite.name, "path": str(suite.path) if suite.path else None, "cases": len(suite.cases),
            "questions_per_topology": suite.n_questions, "generator": suite.generator,
        },
        "model": model_fields,
        "settings": {
            "topologies": list(topologies), "budget": budget, "chat_template": chat_template,
            "score": "mean log-probability per answer token; right only if strictly above every wrong candidate",
            "threads": rt.threads, "score_threads": score_threads,
        },
        "chance": round(chance, 5),
        "seconds": round(time.perf_counter() - t_all, 3),
        "runs": runs,
        "summary": summarize(runs, questions, topologies),
        "questions": questions,
    }


def summarize(runs: list[dict[str, Any]], questions: list[dict[str, Any]], topologies: Sequence[str]) -> dict[str, Any]:
    """Per topology: accuracy over all lengths, per depth, and the mean token cost against raw."""
    out: dict[str, Any] = {}
    for topo in topologies:
        rows = [q for q in questions if q["topology"] == topo]
        k, n = sum(q["correct"] for q in rows), len(rows)
        lo, hi = wilson(k, n)
        by_depth: dict[str, Any] = {}
        for d in sorted({q["depth"] for q in rows if q["depth"] is not None}):
            sub = [q for q in rows if q["depth"] == d]
            kd = sum(q["correct"] for q in sub)
            dl, dh = wilson(kd, len(sub))
            by_depth[f"{d:g}"] = {"n": len(sub), "correct": kd, "accuracy": kd / len(sub), "ci95": [round(dl, 4), round(dh, 4)]}
        mine = [r for r in runs if r["topology"] == topo and r["raw_tokens"]]
        extra = [r["tokens"] / r["raw_tokens"] - 1 for r in mine]
        out[topo] = {
            "n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
            "token_overhead": round(sum(extra) / len(extra), 4) if extra else None,
            "tokens": sum(r["tokens"] for r in runs if r["topology"] == topo),
            "prefill_s": round(sum(r["prefill_s"] for r in runs if r["topology"] == topo), 3),
            "compile_s": round(sum(r["compile_s"] for r in runs if r["topology"] == topo), 6),
            "by_depth": by_depth,
        }
    return out


__all__ = ["DEFAULT_TOPOLOGIES", "TOPOLOGIES", "evaluate", "parse_topologies", "query", "score_question",
           "summarize", "topology_text", "wilson"]
