"""`aotcc eval`: does the compiled topology help? A task suite of questions whose answer
sits in one term's definition, far from where the question is asked; each topology of
the same prompt (raw, definitions on top, inline + tags, inline + annotate) is prefilled
once and every question is scored by the model's length-normalised log-likelihood of
the right answer against plausible wrong ones.

    from aotcc.evaluate import load_suite, evaluate, plot
    suite = load_suite("examples/eval/default_suite.toml")
    record = evaluate(suite, topologies=["raw", "top", "chunk-tag"])
    plot(record, "accuracy.png")
"""

from __future__ import annotations

from aotcc.evaluate.cases import Case, Question, Suite
from aotcc.evaluate.generate import GenConfig, generate_suite
from aotcc.evaluate.report import format_table, plot
from aotcc.evaluate.scoring import DEFAULT_TOPOLOGIES, TOPOLOGIES, evaluate, wilson
from aotcc.evaluate.suite import dump_suite, load_suite

__all__ = [
    "Case", "DEFAULT_TOPOLOGIES", "GenConfig", "Question", "Suite", "TOPOLOGIES", "dump_suite", "evaluate",
    "format_table", "generate_suite", "load_suite", "plot", "wilson",
]
