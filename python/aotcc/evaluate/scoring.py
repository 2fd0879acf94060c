"""Running a suite: compile each topology of each case with the model's own tokenizer,
prefill it once as a root sequence, and ask every question in forks of that root, at
one or more positions:

- `end`: after the whole prompt (as a deployed agent is asked);
- `mid`: right after the chunk where the question's term first appears, in a fork that
  sees only the prompt up to there. Inline definitions sit in that chunk; definitions
  on top sit far before it. Comparing `end` with `mid` tells first-appearance
  placement apart from nearness to the question.

Each question is scored by the model's length-normalised log-likelihood of each
candidate answer: right only when the right answer's mean log-probability per token is
strictly above every wrong candidate's (a tie is wrong). With `generate`, the model
also answers greedily; the answer, cleaned of reference tags (`aotcc.llama.clean`),
is right when it names the right fact before any wrong one, and the raw tags it wrote
are counted.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aotcc.errors import InputError
from aotcc.evaluate.cases import Case, Question, Suite, answer_leaks
from aotcc.evaluate.stats import paired, wilson


@dataclass(frozen=True)
class Topology:
    """A layout of a case's prompt: None placement is the source as written."""

    name: str
    placement: str | None
    references: str = "keep"
    tag_style: str = "seed"
    note: str = ""


TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (
    Topology("raw", None, note="the source, no definitions: a control"),
    Topology("top", "top", "keep", "seed", note="all definitions on top (seed spelling), text untouched: the classic layout"),
    Topology("top-short", "top", "keep", "short", note="all definitions on top in the short spelling, text untouched"),
    Topology("top-tag", "top", "tag", "seed", note="definitions on top, later mentions as seed tags"),
    Topology("chunk-tag", "chunk", "tag", "seed", note="aotcc: inline definitions, later mentions as <__SYS_STATE_A__ />"),
    Topology("chunk-short", "chunk", "tag", "short", note="aotcc: inline definitions, later mentions as <A/>"),
    Topology("chunk-annotate", "chunk", "annotate", "seed", note="inline, later mentions keep the word and add the tag"),
    Topology("chunk-keep", "chunk", "keep", "short", note="inline definitions (short spelling), mentions untouched"),
)}
DEFAULT_TOPOLOGIES = ("raw", "top", "chunk-tag", "chunk-short")
POSITIONS = ("end", "mid")
DEPTH_BINS = ((0.0, 1 / 3, "early"), (1 / 3, 2 / 3, "middle"), (2 / 3, 1.0000001, "late"))

Progress = Callable[[float, float, str, str], None]


def parse_topologies(names: str | Sequence[str]) -> list[str]:
    """Topology names from `raw,top,...` (or a list); an unknown name is an error listing the known ones."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise InputError("--topologies: no topology given")
    for n in items:
        if n not in TOPOLOGIES:
            raise InputError(f"--topologies: unknown topology {n!r}; known: {', '.join(TOPOLOGIES)}")
    if len(set(items)) != len(items):
        raise InputError("--topologies: a topology is listed twice")
    return items


def parse_positions(names: str | Sequence[str]) -> list[str]:
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n) for n in names]
    items = [n for n in items if n]
    if not items or any(n not in POSITIONS for n in items) or len(set(items)) != len(items):
        raise InputError(f"--positions {','.join(items) or '(none)'}: expected one or both of {', '.join(POSITIONS)}")
    return items


def depth_bin(depth: float | None) -> str | None:
    if depth is None:
        return None
    return next(name for lo, hi, name in DEPTH_BINS if lo <= depth < hi)


# --- layouts -------------------------------------------------------------------------


@dataclass
class Layout:
    """One topology of one case: its text, each term's definition span, and where each
    source chunk ends in the text (characters)."""

    topology: str
    text: str
    spans: dict[str, tuple[int, int]]
    chunk_ends: list[int]
    compiled: Any  # the aotcc.Compiled, None for raw
    compile_s: float


def layout(case: Case, topology: str, *, budget: int = 512, tokenizer: Any = None) -> Layout:
    """The prompt text of `case` in `topology`, compiled with `tokenizer` (the model's
    GGUF, so chunk budgets are in the model's tokens)."""
    import aotcc

    topo = TOPOLOGIES[topology]
    t = time.perf_counter()
    # raw is the source; its chunk ends are those of any compile of the same source
    c = aotcc.compile(case.prompt, case.terms, budget=budget, placement=topo.placement or "top",
                      references=topo.references, tag_style=topo.tag_style, tokenizer=tokenizer, progress=False)
    elapsed = time.perf_counter() - t
    if topo.placement is None:
        return Layout(topology, case.prompt, {}, [int(x) for x in c.chunks.src_end], None, 0.0)
    spans = {ti.name: ti.definition_span for ti in c.terms if ti.definition_span is not None}
    return Layout(topology, c.text, spans, [int(x) for x in c.chunks.out_end], c, elapsed)


def first_chunks(case: Case, budget: int, tokenizer: Any) -> dict[str, int]:
    """Per term: the chunk of its first literal mention in the source."""
    import aotcc

    c = aotcc.compile(case.prompt, case.terms, budget=budget, references="keep", tokenizer=tokenizer, progress=False)
    names = [t.name for t in c.terms]
    occ = c.occurrences
    out: dict[str, int] = {}
    for term, chunk, role in zip(occ.term.tolist(), occ.chunk.tolist(), occ.role.tolist()):
        if role == 0:
            out.setdefault(names[int(term)], int(chunk))
    return out


# --- asking --------------------------------------------------------------------------


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


def _mention_at(text: str, value: str) -> int:
    m = re.search(r"(?<![\w$])" + re.escape(value) + r"(?!\w)", text, re.IGNORECASE)
    return m.start() if m else -1


def generate_answer(root: Any, question: Question, max_tokens: int) -> dict[str, Any]:
    """Ask greedily in a fork of `root`; right when the clean answer names the right
    value before any wrong candidate."""
    prompt, _ = query(question, root.template is not None)
    with root.fork() as s:
        a = s.ask(prompt, max_tokens=max_tokens)
    at = _mention_at(a.text, question.answer)
    wrong_at = [x for x in (_mention_at(a.text, w) for w in question.wrong) if x >= 0]
    ok = at >= 0 and all(at <= w for w in wrong_at)
    return {"gen_correct": ok, "gen_tags": a.tags, "gen_text": a.text[:200]}


# --- the run -------------------------------------------------------------------------


def evaluate(
    suite: Suite,
    *,
    model: str | os.PathLike[str] | None = None,
    topologies: Sequence[str] = DEFAULT_TOPOLOGIES,
    positions: Sequence[str] = ("end",),
    budget: int = 512,
    chat_template: str | None = None,
    generate: int = 0,
    tokenizer: Any = "model",
    n_threads: int | None = None,
    score_threads: int = 1,
    progress: Progress | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    runtime: Any = None,
) -> dict[str, Any]:
    """Run every (case, topology, position) of `suite` and return the record (see
    docs/eval.md).

    `tokenizer="model"` compiles with the model's own vocabulary (a `.gguf` model),
    None with the estimator. `generate` > 0 also generates an answer of at most that
    many tokens per question. Prefill runs on `n_threads`; scoring decodes a few tokens
    at a time, where a second thread hardly pays and stalls every step on a busy
    machine, so it runs on `score_threads`. `chat_template` ("auto" or a llama.cpp
    template name) wraps the prompt as the system turn and each question as a user
    turn. `progress(done, total, label, unit)` is called during prefill and scoring;
    `on_run(run)` after each (case, topology).
    """
    from aotcc import __version__
    from aotcc.llama.runtime import Runtime

    topologies = parse_topologies(list(topologies))
    positions = parse_positions(list(positions))
    # the root, a question fork, its query fork and a fork per candidate (scored in one decode)
    rt = runtime if runtime is not None else Runtime(model, n_threads=n_threads, max_sessions=8)
    tok = str(rt.model_path) if tokenizer == "model" and str(rt.model_path).lower().endswith(".gguf") else (
        None if tokenizer == "model" else tokenizer)
    runs: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        for case in suite.cases:
            firsts = first_chunks(case, budget, tok) if "mid" in positions else {}
            for topo in topologies:
                lay = layout(case, topo, budget=budget, tokenizer=tok)
                label = f"{topo} {case.id}"
                t = time.perf_counter()
                root = rt.cold(lay.compiled if lay.compiled is not None else lay.text, chat_template=chat_template,
                               progress=_stage(progress, f"prefill {label}"))
                prefill_s = time.perf_counter() - t
                n_tokens = root.n_past
                for pos in positions:
                    rows = _ask_all(rt, root, case, lay, pos, firsts, generate, score_threads, progress, label)
                    questions += rows
                    run = _run_row(case, topo, pos, rows, n_tokens, lay.compile_s, prefill_s)
                    runs.append(run)
                    if on_run is not None:
                        on_run(run)
        model_fields = rt.model_fields()
    finally:
        if runtime is None:
            rt.close()
    raw_by_case = {r["case"]: r["tokens"] for r in runs if r["topology"] == "raw"}
    for r in runs:
        r["raw_tokens"] = raw_by_case.get(r["case"])
    chance = sum(1 / len(q.candidates) for c in suite.cases for q in c.questions) / max(1, suite.n_questions)
    return {
        "format": "aotcc-eval-record/2",
        "aotcc_version": __version__,
        "suite": {
            "name": suite.name, "path": str(suite.path) if suite.path else None, "cases": len(suite.cases),
            "questions_per_topology": suite.n_questions, "generator": suite.generator,
        },
        "model": model_fields,
        "settings": {
            "topologies": list(topologies), "positions": list(positions), "budget": budget,
            "tokenizer": tok or "estimator", "chat_template": chat_template, "generate": generate,
            "score": "mean log-probability per answer token; right only if strictly above every wrong candidate",
            "threads": rt.threads, "score_threads": score_threads,
        },
        "chance": round(chance, 5),
        "seconds": round(time.perf_counter() - t_all, 3),
        "runs": runs,
        "summary": summarize(runs, questions, topologies, positions),
        "paired": paired_tests(questions, topologies, positions),
        "questions": questions,
    }


def _stage(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    """`progress` for one prefill, as `(done, total)`."""
    if progress is None:
        return None
    report = progress
    return lambda done, total: report(done, total, label, "tok")


def _ask_all(rt: Any, root: Any, case: Case, lay: Layout, pos: str, firsts: dict[str, int], generate: int,
             score_threads: int, progress: Progress | None, label: str) -> list[dict[str, Any]]:
    rows = []
    ends = _token_ends(rt, root, lay) if pos == "mid" else {}
    with rt.batch_threads(score_threads):
        for i, q in enumerate(case.questions):
            at = None
            if pos == "mid":
                chunk = firsts.get(q.term)
                at = ends.get(chunk) if chunk is not None else None
                if at is None:  # the term is never mentioned: nowhere to ask mid-prompt
                    continue
            with root.fork(at=at) as where:
                row = score_question(where, q)
                if generate:
                    row.update(generate_answer(where, q, generate))
            row.update(topology=lay.topology, case=case.id, length=case.length, position=pos,
                       depth_bin=depth_bin(q.depth), leak=bool(answer_leaks(q, lay.text, lay.spans.get(q.term))))
            rows.append(row)
            if progress:
                progress(i + 1, len(case.questions), f"{pos} {label}", "questions")
    return rows


def _token_ends(rt: Any, root: Any, lay: Layout) -> dict[int, int]:
    """Per chunk: the number of prompt tokens up to its end, where a mid-prompt
    question forks (the last chunk's end is the whole prompt). The text up to a chunk
    end is tokenized on its own; the fork keeps the longest prefix it shares with the
    whole prompt's tokens."""
    full = rt.prompt_tokens(lay.text, root.template)
    out: dict[int, int] = {len(lay.chunk_ends) - 1: root.n_past}
    for k, end in enumerate(lay.chunk_ends[:-1]):
        part = rt.prompt_tokens(lay.text[:end], root.template)
        n = 0
        for x, y in zip(part, full):
            if x != y:
                break
            n += 1
        out[k] = n
    return out


def _run_row(case: Case, topo: str, pos: str, rows: list[dict[str, Any]], n_tokens: int, compile_s: float,
             prefill_s: float) -> dict[str, Any]:
    k = sum(r["correct"] for r in rows)
    n = len(rows)
    lo, hi = wilson(k, n)
    out = {
        "topology": topo, "case": case.id, "position": pos,
        "length": case.length if case.length is not None else n_tokens, "tokens": n_tokens, "raw_tokens": None,
        "compile_s": round(compile_s, 6), "prefill_s": round(prefill_s, 4),
        "prefill_tok_s": round(n_tokens / prefill_s, 1) if prefill_s > 0 else None,
        "n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)],
        "mean_margin": round(sum(r["margin"] for r in rows) / n, 5) if n else None,
        "leaks": sum(r["leak"] for r in rows),
    }
    if rows and "gen_correct" in rows[0]:
        g = sum(r["gen_correct"] for r in rows)
        out.update(gen_correct=g, gen_accuracy=g / n, gen_tags=sum(r["gen_tags"] for r in rows))
    return out


def _acc(rows: list[dict[str, Any]], key: str = "correct") -> dict[str, Any]:
    k, n = sum(r[key] for r in rows), len(rows)
    lo, hi = wilson(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)]}


def summarize(runs: list[dict[str, Any]], questions: list[dict[str, Any]], topologies: Sequence[str],
              positions: Sequence[str] = ("end",)) -> dict[str, Any]:
    """Per topology and position: accuracy over all lengths, per depth bin, the
    generation score, and the mean token cost against raw."""
    out: dict[str, Any] = {}
    for topo in topologies:
        mine = [r for r in runs if r["topology"] == topo and r["position"] == positions[0]]
        extra = [r["tokens"] / r["raw_tokens"] - 1 for r in mine if r["raw_tokens"]]
        entry: dict[str, Any] = {
            "token_overhead": round(sum(extra) / len(extra), 4) if extra else None,
            "tokens": sum(r["tokens"] for r in mine),
            "prefill_s": round(sum(r["prefill_s"] for r in mine), 3),
            "compile_s": round(sum(r["compile_s"] for r in mine), 6),
        }
        for pos in positions:
            rows = [q for q in questions if q["topology"] == topo and q["position"] == pos]
            e = _acc(rows)
            e["by_depth"] = {name: _acc([q for q in rows if q["depth_bin"] == name]) for _, _, name in DEPTH_BINS
                             if any(q["depth_bin"] == name for q in rows)}
            e["no_leak"] = _acc([q for q in rows if not q["leak"]])
            if rows and "gen_correct" in rows[0]:
                e["generation"] = _acc(rows, "gen_correct") | {"raw_tags": sum(q["gen_tags"] for q in rows)}
            entry[pos] = e
        # accuracy per 1,000 prompt tokens: the cost-aware figure the default follows
        if entry["tokens"]:
            acc = entry[positions[0]]["accuracy"]
            entry["accuracy_per_ktoken"] = round(acc / (entry["tokens"] / max(1, len(mine)) / 1000), 5)
        out[topo] = entry
    return out


def paired_tests(questions: list[dict[str, Any]], topologies: Sequence[str], positions: Sequence[str]) -> list[dict[str, Any]]:
    """Every pair of topologies on the same questions, per position (and for generated
    answers): exact McNemar and a paired bootstrap of the accuracy difference."""
    out = []
    key = {(q["topology"], q["position"], q["case"], q["question"]): q for q in questions}
    for pos in positions:
        for i, a in enumerate(topologies):
            for b in topologies[i + 1:]:
                ids = [(q["case"], q["question"]) for q in questions if q["topology"] == a and q["position"] == pos]
                pairs = [(key[(a, pos, c, x)], key[(b, pos, c, x)]) for c, x in ids if (b, pos, c, x) in key]
                if not pairs:
                    continue
                for metric in ("correct", "gen_correct"):
                    if metric not in pairs[0][0]:
                        continue
                    t = paired(a, [p[metric] for p, _ in pairs], b, [r[metric] for _, r in pairs])
                    out.append(t.to_dict() | {"position": pos, "metric": "loglik" if metric == "correct" else "generation"})
    return out


__all__ = ["DEFAULT_TOPOLOGIES", "POSITIONS", "TOPOLOGIES", "Topology", "evaluate", "layout", "paired_tests",
           "parse_positions", "parse_topologies", "query", "score_question", "summarize", "wilson"]
