"""The paired statistics of `aotcc eval` against values computed by hand, and the
questions `eval --auto` builds from a spec."""

from __future__ import annotations

import json
import math

import pytest

from aotcc.errors import InputError
from aotcc.evaluate.auto import auto_suite, facts, questions
from aotcc.evaluate.stats import mcnemar_exact, paired, paired_bootstrap
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS


def test_mcnemar_exact_by_hand() -> None:
    # 18 questions right only in one layout, 0 only in the other: 2 * 0.5**18
    assert mcnemar_exact(18, 0) == pytest.approx(2 * 0.5**18, rel=1e-12)
    assert mcnemar_exact(0, 18) == mcnemar_exact(18, 0)
    # b=5, c=1: 2 * (C(6,0) + C(6,1)) / 2**6 = 2 * 7 / 64
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64, rel=1e-12)
    # b=3, c=3: the two-sided tail passes 1 and is capped
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    # b=10, c=2: 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096, rel=1e-12)
    # large counts stay finite and exact in log space
    p = mcnemar_exact(600, 500)
    assert 0 < p < 0.01 and math.isfinite(p)


def test_paired_bootstrap_by_hand() -> None:
    same = [True, False, True, True]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    assert paired_bootstrap([True] * 5, [False] * 5) == (1.0, 1.0, 1.0)
    a = [True] * 30 + [False] * 70
    b = [False] * 10 + [True] * 20 + [False] * 70  # a is right on 10 questions b misses
    diff, lo, hi = paired_bootstrap(a, b, samples=4000, seed=1)
    assert diff == pytest.approx(0.1)
    # the differences are 10 ones in 100: the bootstrap interval sits around 0.1 with
    # a width near 2 * 1.96 * sqrt(0.1 * 0.9 / 100) = 0.118
    assert 0.03 <= lo < 0.1 < hi <= 0.17
    assert paired_bootstrap(a, b, samples=4000, seed=1) == (diff, lo, hi)  # seeded


def test_paired_counts() -> None:
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    t = paired("x", a, "y", b)
    assert (t.both, t.only_a, t.only_b, t.neither, t.n) == (1, 2, 1, 1, 5)
    assert t.diff == pytest.approx(0.2)
    assert t.p_mcnemar == pytest.approx(2 * (1 + 3) / 8)  # b=2, c=1: 2 * (C(3,0)+C(3,1)) / 2**3, capped at 1
    assert t.to_dict()["p_mcnemar"] == 1.0


def test_facts_of_a_definition() -> None:
    got = facts("Diagnostic Bundle", "Uploaded by collect_diagnostics. It is valid for 72 hours, after which a "
                "fresh one is needed; at most three per day, and a fee of $20.")
    assert [(f.kind, f.value) for f in got] == [
        ("code:snake", "collect_diagnostics"), ("duration:time", "72 hours"), ("amount:$", "$20"), ("count:per", "three")]


def test_auto_questions_from_the_example() -> None:
    doc = json.loads(__import__("aotcc.spec", fromlist=["load_spec"]).load_spec(str(EXAMPLE_TERMS))[0])
    qs = questions(doc["terms"])
    assert len(qs) >= 15
    for q in qs:
        assert "___" in q.ask and q.term in q.ask
        assert q.answer not in q.ask  # blanked
        assert q.answer.lower() not in {w.lower() for w in q.wrong} and len(set(q.wrong)) == len(q.wrong)
        definition = next(t["definition"] for t in doc["terms"] if t["name"] == q.term)
        assert q.answer in definition
    suite = auto_suite([(str(EXAMPLE_PROMPT), EXAMPLE_PROMPT.read_bytes())], doc, str(EXAMPLE_TERMS))
    (case,) = suite.cases
    assert case.prompt == EXAMPLE_PROMPT.read_text()  # the user's prompt stays the prompt
    assert all(q.depth is not None and 0 <= q.depth <= 1 for q in case.questions)


def test_auto_refuses_a_spec_without_facts() -> None:
    doc = {"terms": [{"name": "Relay Hub", "definition": "The main unit in the home."},
                     {"name": "Relay Node", "definition": "A satellite that extends coverage."}]}
    with pytest.raises(InputError, match=r"terms\.toml: no definition states a fact.*'Relay Hub'"):
        auto_suite([("p.md", b"Use the Relay Hub and the Relay Node.")], doc, "terms.toml")


def test_cli_auto_errors(cli, tmp_path) -> None:
    spec = tmp_path / "terms.toml"
    spec.write_text('[[term]]\nname = "Relay Hub"\ndefinition = "The main unit."\n')
    prompt = tmp_path / "p.md"
    prompt.write_text("Use the Relay Hub.\n")
    r = cli("eval", "--auto", prompt, "--terms", spec)
    assert r.code == 2 and r.err.count("\n") == 1 and "no definition states a fact" in r.err and "Relay Hub" in r.err
    r = cli("eval", "--auto", prompt)
    assert r.code == 2 and "--terms" in r.err
    r = cli("run", "x.aotkv", "--prompt", "q", "--stop", "")
    assert r.code == 2 and "--stop" in r.err and r.err.count("\n") == 1
