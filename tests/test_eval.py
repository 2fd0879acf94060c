"""`aotcc eval`: the suite generator is deterministic and each question's answer lives
only in its term's definition (structurally, in every topology); scoring ranks the
right answer first when a definition states it right before the question, on the real
Gemma 3 270M; `Session.score` agrees with a plain decode of the same tokens; the CLI
writes a record, a table and a PNG with one line per topology; bad input exits 2 with
one line naming the file, field or topology.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aotcc.errors import InputError
from aotcc.evaluate import GenConfig, dump_suite, generate_suite, load_suite, wilson
from aotcc.evaluate.cases import Question, word_spans
from aotcc.evaluate.report import format_table, plot
from aotcc.evaluate.scoring import TOPOLOGIES, layout, query, score_question
from conftest import ROOT

SMALL = GenConfig(seed=3, lengths=(256, 512), terms=4, candidates=3, mentions=1, attributes=("colour",))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- the generator -------------------------------------------------------------------


def test_generator_is_deterministic() -> None:
    cfg = GenConfig(seed=11, lengths=(512, 2048))
    a, b = dump_suite(generate_suite(cfg)), dump_suite(generate_suite(cfg))
    assert a == b
    other = dump_suite(generate_suite(replace(cfg, seed=12)))
    assert other != a
    # the facts depend on the seed only: another length keeps terms and answers
    longer = generate_suite(replace(cfg, lengths=(4096,))).cases[0]
    assert longer.terms == generate_suite(cfg).cases[0].terms
    assert [q.answer for q in longer.questions] == [q.answer for q in generate_suite(cfg).cases[0].questions]


def test_generated_lengths_and_depths() -> None:
    # a term's later mentions must fit after its first one: at 1k tokens, 6 terms x 2
    # mentions at depth 0.9 would not, so this checks a layout where they do
    suite = generate_suite(GenConfig(seed=5, lengths=(1024, 4096), depths=(0.1, 0.5, 0.9), terms=6, mentions=1))
    short, long = suite.cases
    assert 3.0 < len(long.prompt) / len(short.prompt) < 5.0
    for case in suite.cases:
        for q in case.questions:
            first = word_spans(case.prompt, q.term)[0][0] / len(case.prompt)
            assert abs(first - q.depth) < 0.08, (case.id, q.term, q.depth, first)


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_answer_lives_only_in_its_definition(topology: str) -> None:
    """Removing a question's definition block removes every copy of its answer."""
    suite = generate_suite(GenConfig(seed=7, lengths=(512, 1024)))
    for case in suite.cases:
        lay = layout(case, topology)
        text, spans = lay.text, lay.spans
        for q in case.questions:
            for cand in q.candidates:  # no candidate anywhere in the human-written source
                assert word_spans(case.prompt, cand) == [], (q.id, cand)
            definition = case.term(q.term)["definition"]
            assert word_spans(definition, q.answer), q.id
            others = [t["definition"] for t in case.terms["terms"] if t["name"] != q.term]
            assert not any(word_spans(d, q.answer) for d in others), q.id
            found = word_spans(text, q.answer)
            if TOPOLOGIES[topology].placement is None:
                assert found == [], (topology, q.id)  # raw: the source without definitions
                continue
            s, e = spans[q.term]
            assert found and all(s <= a and b <= e for a, b in found), (topology, q.id, found, (s, e))
            assert word_spans(text[:s] + text[e:], q.answer) == [], (topology, q.id)
            for w in q.wrong:  # each wrong candidate is another term's value: in the prompt too
                assert word_spans(text, w), (topology, q.id, w)


def test_suite_round_trips_through_toml(tmp_path: Path) -> None:
    suite = generate_suite(SMALL)
    p = tmp_path / "suite.toml"
    p.write_bytes(dump_suite(suite))
    again = load_suite(p)
    assert again.cases == suite.cases
    gen = tmp_path / "gen.toml"
    gen.write_text('name = "small"\n[generate]\nseed = 3\nlengths = [256, 512]\nterms = 4\ncandidates = 3\n'
                   'mentions = 1\nattributes = ["colour"]\n')
    assert load_suite(gen).cases == suite.cases
    assert [c.length for c in load_suite(gen, lengths=[512]).cases] == [512]


def test_shipped_suite_loads() -> None:
    suite = load_suite(ROOT / "examples" / "eval" / "default_suite.toml")
    assert suite.generator is not None and len(suite.cases) >= 3
    assert all(len(q.candidates) >= 4 for c in suite.cases for q in c.questions)


def test_wilson_interval() -> None:
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 12)[0] == 0.0 and wilson(12, 12)[1] == 1.0
    lo, hi = wilson(1, 4)
    assert 0 < lo < 0.25 < hi < 1


# --- scoring on the real model --------------------------------------------------------


@pytest.fixture(scope="module")
def runtime():
    from aotcc.llama.runtime import Runtime

    rt = Runtime(max_sessions=4, n_threads=1)  # tiny batches: one thread is fastest, even more so on a busy machine
    yield rt
    rt.close()


@pytest.mark.model
def test_forced_answer_wins(runtime) -> None:
    """A definition stated right before the question decides the answer: swapping the
    stated value swaps the winner, so the score reads the context, not a prior."""
    cands = ["crimson", "teal", "violet", "ochre"]
    for stated in ("crimson", "violet"):
        root = runtime.cold(
            "Glossary.\nThe Vornic Seal is the badge for the records room. "
            f"Its signal colour is {stated}.\n"
        )
        wrong = [c for c in cands if c != stated]
        q = Question("q", "Vornic Seal", "What is the signal colour of the Vornic Seal?", stated, tuple(wrong))
        row = score_question(root, q)
        assert row["correct"] and row["chosen"] == stated, row
        assert row["margin"] > 0


@pytest.mark.model
def test_session_score_matches_a_plain_decode(runtime) -> None:
    """`Session.score` (query decoded once, each candidate in its own fork) gives the same
    log-probabilities as decoding query + candidate in one go, and leaves the root as it was."""
    root = runtime.cold("The Talrin Gate is the storage rule for cold storage. Its routing code is VX-56.\n")
    q = Question("q", "Talrin Gate", "What is the routing code of the Talrin Gate?", "VX-56", ("KW-84", "JW-20"))
    prompt, conts = query(q, templated=False)
    n_root, used = root.n_past, runtime._used
    scores = root.score(prompt, conts)
    assert root.n_past == n_root and runtime._used == used
    assert root.score(prompt, conts) == scores  # forks do not leak into each other
    m, ctx = runtime.model, runtime._ctx
    qt = m.tokenize(prompt, special=False)
    for cont, s in zip(conts, scores):
        ct = m.tokenize(cont, special=False)
        assert s.n_tokens == len(ct)
        with root.fork() as f:
            lp = ctx.logprobs(qt + ct, seq=f.seq, pos=f.n_past)
            f.n_past += len(qt) + len(ct)
            f._own += len(qt) + len(ct)
            runtime._used += len(qt) + len(ct)
        # batch shapes differ (query then candidate vs one batch), so quantized kernels
        # round differently: a few hundredths of a nat per token
        assert float(np.sum(lp[len(qt):], dtype=np.float64)) == pytest.approx(s.logprob, abs=0.3)
    assert scores[0].mean > max(x.mean for x in scores[1:])


@pytest.mark.model
def test_cli_eval_end_to_end(cli, tmp_path: Path) -> None:
    suite = tmp_path / "small.toml"
    suite.write_text('name = "small"\n[generate]\nseed = 3\nlengths = [256, 512]\nterms = 4\ncandidates = 3\n'
                     'mentions = 1\nattributes = ["colour"]\n')
    record_path, png = tmp_path / "record.json", tmp_path / "acc.png"
    topologies = ["raw", "top", "chunk-tag"]
    r = cli("eval", suite, "-T", ",".join(topologies), "-o", record_path, "--plot", png, "-q")
    assert r.code == 0, r.err
    for t in topologies:
        assert t in r.out
    record = json.loads(record_path.read_text())
    runs = record["runs"]
    assert [(x["case"], x["topology"]) for x in runs] == [(c, t) for c in ("L256", "L512") for t in topologies]
    assert all(x["n"] == 4 and 0 <= x["correct"] <= 4 and x["leaks"] == 0 for x in runs)
    by = {(x["case"], x["topology"]): x for x in runs}
    for c in ("L256", "L512"):
        assert by[c, "raw"]["compile_s"] == 0 and by[c, "top"]["compile_s"] > 0
        assert by[c, "top"]["tokens"] > by[c, "raw"]["tokens"]  # the definitions cost tokens
        assert by[c, "raw"]["tokens"] < by[c, "chunk-tag"]["tokens"]
    assert len(record["questions"]) == 24
    assert record["chance"] == pytest.approx(1 / 3, abs=1e-4)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    again = tmp_path / "again.png"
    assert plot(record, again) == topologies  # one line per topology, in order
    assert again.read_bytes()[:8] == PNG_SIGNATURE
    assert format_table(record) == r.out


# --- bad input ------------------------------------------------------------------------


def _refused(r, *needles: str) -> None:
    assert r.code == 2, (r.code, r.err)
    assert r.err.startswith("aotcc: error: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, (n, r.err)


GOOD_CASE = """
[[case]]
id = "tiny"
length = 128
prompt = "Staff must follow the Vornic Seal."
[[case.term]]
name = "Vornic Seal"
definition = "Its signal colour is crimson."
[[case.question]]
term = "Vornic Seal"
ask = "What is the signal colour of the Vornic Seal?"
answer = "crimson"
wrong = ["teal", "violet"]
"""


@pytest.mark.parametrize("text, needles", [
    ("[[case]\nid = 1", ["malformed TOML"]),
    (GOOD_CASE.replace('wrong = ["teal", "violet"]', 'wrong = "teal"'), ["case[0].question[0].wrong", "list"]),
    (GOOD_CASE.replace('answer = "crimson"\n', ""), ["case[0].question[0].answer: missing"]),
    (GOOD_CASE.replace('term = "Vornic Seal"\nask', 'term = "Nope"\nask'), ["case[0].question[0].term", "Nope"]),
    (GOOD_CASE.replace('wrong = ["teal", "violet"]', 'wrong = ["teal", "Crimson"]'), ["right answer"]),
    (GOOD_CASE.replace("length = 128", "length = -3"), ["case[0].length"]),
    (GOOD_CASE.replace('definition = "Its signal colour is crimson."\n', ""), ["case[0].term[0].definition: missing"]),
    ('name = "x"\n', ["nothing to evaluate"]),
    ("[generate]\nlengths = [1024, 1024]\n", ["generate.lengths"]),
    ("[generate]\ndepths = [1.5]\n", ["generate.depths[0]"]),
    ("[generate]\nseeds = 3\n", ["generate.seeds: unknown field"]),
    ('format = "other/9"\n' + GOOD_CASE, ["format"]),
])
def test_cli_refuses_a_malformed_suite(cli, tmp_path: Path, text: str, needles: list[str]) -> None:
    p = tmp_path / "suite.toml"
    p.write_text(text)
    r = cli("eval", p, "--write-suite", tmp_path / "out.toml")
    _refused(r, "suite.toml", *needles)
    assert not (tmp_path / "out.toml").exists()


def test_cli_refuses_bad_arguments(cli, tmp_path: Path) -> None:
    p = tmp_path / "suite.toml"
    p.write_text(GOOD_CASE)
    _refused(cli("eval", tmp_path / "missing.toml"), "missing.toml", "no such file")
    _refused(cli("eval", p, "-T", "raw,sideways"), "unknown topology 'sideways'", "chunk-tag")
    _refused(cli("eval", p, "--lengths", "1k,lots"), "--lengths", "'lots'")
    _refused(cli("eval", p, "--lengths", "2k"), "no case of length 2048", "128")
    _refused(cli("eval", p, "--model", tmp_path / "none.gguf"), "none.gguf", "no such model file")
    _refused(cli("eval", p, "--plot", tmp_path / "nodir" / "x.png"), "does not exist")
    _refused(cli("eval", tmp_path), "is a directory")


def test_write_suite_expands_a_generator(cli, tmp_path: Path) -> None:
    p = tmp_path / "gen.toml"
    p.write_text("[generate]\nseed = 2\nlengths = [256]\nterms = 3\ncandidates = 2\n")
    out = tmp_path / "expanded.toml"
    r = cli("eval", p, "--write-suite", out, "--lengths", "512,768")
    assert r.code == 0, r.err
    s = load_suite(out)
    assert [c.length for c in s.cases] == [512, 768] and s.n_questions == 12
    with pytest.raises(InputError, match="no case of length 256"):
        s.select([256])


@pytest.mark.model
def test_mid_prompt_fork_sees_only_the_prefix(runtime) -> None:
    """A question asked mid-prompt (a fork of the first tokens of the full prefill) scores
    as it does after a cold prefill of just that prefix: the fork sees nothing after it."""
    from aotcc.evaluate.scoring import _token_ends, layout

    case = generate_suite(GenConfig(seed=4, lengths=(1024,), terms=4, mentions=1, attributes=("colour",))).cases[0]
    lay = layout(case, "chunk-tag", budget=256)
    assert len(lay.chunk_ends) >= 3
    root = runtime.cold(lay.compiled)
    ends = _token_ends(runtime, root, lay)
    assert ends[len(lay.chunk_ends) - 1] == root.n_past
    k = 1
    q = case.questions[0]
    with root.fork(at=ends[k]) as mid:
        a = score_question(mid, q)
    prefix = runtime.cold(lay.text[: lay.chunk_ends[k]])
    assert prefix.n_past == ends[k]
    b = score_question(prefix, q)
    assert a["scores"] == pytest.approx(b["scores"], abs=0.15)


@pytest.mark.model
def test_cli_eval_positions_generation_and_paired_tests(cli, tmp_path: Path) -> None:
    suite = tmp_path / "small.toml"
    suite.write_text('name = "small"\n[generate]\nseed = 3\nlengths = [384]\nterms = 4\ncandidates = 3\n'
                     'mentions = 1\nattributes = ["colour"]\n')
    record_path = tmp_path / "record.json"
    r = cli("eval", suite, "-T", "raw,chunk-short", "-P", "end,mid", "--generate", "4", "-o", record_path, "-q",
            "--plot", tmp_path / "p.png")
    assert r.code == 0, r.err
    record = json.loads(record_path.read_text())
    assert record["settings"]["tokenizer"].endswith(".gguf")  # compiled with the model's own vocabulary
    assert {(x["topology"], x["position"]) for x in record["runs"]} == {
        (t, p) for t in ("raw", "chunk-short") for p in ("end", "mid")}
    assert all("gen_correct" in q and "gen_tags" in q for q in record["questions"])
    tests = record["paired"]
    assert {(t["position"], t["metric"]) for t in tests} == {(p, m) for p in ("end", "mid") for m in ("loglik", "generation")}
    for t in tests:
        assert t["n"] == 4 and t["both"] + t["only_a"] + t["only_b"] + t["neither"] == 4 and 0 <= t["p_mcnemar"] <= 1
    assert "paired tests" in r.out and "McNemar" in r.out
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_SIGNATURE
