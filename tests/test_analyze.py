"""LLM-assisted analysis on the real Gemma 3 270M model: boundaries land at topic
shifts better than fixed-size chunks (boundary F1), a paraphrase moves a definition
earlier and its absence does not, an edit re-runs the model only for what changed, a
drafted spec parses and compiles, a corrupt cache entry is rebuilt and reported, and
bad input exits 2 with one line.

One engine and one cache directory serve the whole module, so a prompt the model has
seen once is not decoded again by a later test (the edit and corrupt-cache tests use
their own directories, since they count calls).
"""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp  # noqa: F401  (make test installs it; a missing one is a failure, not a skip)
import numpy as np
import pytest

import aotcc
from aotcc.analyze import Cache, Engine, analyze
from aotcc.analyze import draft as draft_mod
from aotcc.spec import load_spec
from aotcc.units import segment
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

pytestmark = pytest.mark.model

# --- constructed prompts -----------------------------------------------------------

TOPICS = [
    "Humpback whales migrate thousands of kilometres every year between cold feeding waters and warm breeding "
    "grounds. They feed on krill and small fish by lunging through dense schools with their mouths open. Males "
    "sing long, complex songs that can travel great distances under water. Calves stay close to their mothers "
    "for about a year.",
    "To bake sourdough bread, first feed the starter with flour and water the night before. Mix the dough, let "
    "it rest, then fold it every half hour to build strength. Shape the loaf, proof it slowly in the fridge, and "
    "bake it in a very hot covered pot. A good crust crackles as the bread cools on the rack.",
    "The castle keep was the strongest tower, where the lord and his family lived during a siege. Thick stone "
    "walls, a moat and a drawbridge protected the inner bailey. Archers stood on the battlements behind narrow "
    "arrow slits. Siege engines such as trebuchets threw heavy stones against the gatehouse.",
    "A volcano erupts when molten rock rises from the mantle and pressure builds under the crust. Lava flows, "
    "ash clouds and pyroclastic surges can bury nearby towns. Geologists watch for small earthquakes and swelling "
    "of the ground before an eruption. Volcanic soil is very fertile once it cools and weathers.",
    "In chess, the opening is about controlling the centre and developing knights and bishops quickly. Castling "
    "early keeps the king safe behind a wall of pawns. Players study lines like the Sicilian Defence and the "
    "Queen's Gambit. A grandmaster can calculate many moves ahead in sharp positions.",
    "Filing a tax return starts with collecting income statements and receipts for deductible expenses. Most "
    "people can submit the return online before the deadline in spring. Interest is charged on tax paid late. "
    "An accountant can help when income comes from several countries.",
]
SHIFT_TEXT = " ".join(TOPICS) + "\n"
SHIFT_BUDGET = 120

REFUND_SPEC = {
    "terms": [
        {"name": "Refund Policy", "aliases": ["refund policy"],
         "definition": "Customers can get their money back within 30 days of purchase if the item is unused."},
        {"name": "Express Delivery",
         "definition": "Next-working-day delivery for orders placed before noon, for a fee of 9 euros."},
    ]
}
SECTION_INTRO = "# Store assistant\n\nYou help customers of an online shop with their orders, deliveries and accounts.\n\n"
PARAPHRASE = ("# Unhappy customers\n\nWhen a customer is unhappy with something they bought and wants their money "
              "back, explain how returning it for a full reimbursement works.\n\n")
UNRELATED = ("# Sizes\n\nWhen a customer asks which size to order, point them to the size chart on the product "
             "page and the fitting notes.\n\n")
TAIL = (
    "# Delivery\n\nStandard delivery takes three to five working days. Express Delivery arrives the next working "
    "day. Tracking links are sent by email when the parcel leaves the warehouse.\n\n"
    "# Gift cards\n\nGift cards never expire and can be used for any product in the shop. A lost gift card can be "
    "replaced once the customer shows the original receipt.\n\n"
    "# Rules\n\nThe Refund Policy applies only to items bought directly from our own shop.\n"
)
SEM_BUDGET = 48

GLOSSARY_PROMPT = """# Northwind support agent

You answer customers of Northwind Relay, a company that leases mesh networking hardware.

## Glossary

- **Relay Hub**: The central router of every installation; it connects to the customer's modem.
- Advance Replacement (AR) — A replacement unit shipped before the faulty one is returned.
- Goodwill Credit means a one-off account credit for an agent's mistake, at most 20 euros.

## Rules

Never ship an Advance Replacement to a customer on the Core plan. A Goodwill Credit needs a note in the ticket.
The Relay Hub must be restarted before any other troubleshooting. A Declared Outage is an outage that the
network team has confirmed on the status page; during a Declared Outage do not open hardware tickets.
"""


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    yield e
    e.close()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("analyze-cache")


def _aligned(units, offsets) -> set[int]:
    """Each offset moved to the unit boundary at or after it (what the chunker does)."""
    starts = sorted(u.start for u in units)
    out = set()
    for o in offsets:
        i = int(np.searchsorted(starts, o, side="left"))
        if i < len(starts):
            out.add(starts[i])
    return out


def _f1(predicted: set[int], truth: set[int]) -> float:
    if not predicted or not truth:
        return 0.0
    tp = len(predicted & truth)
    if tp == 0:
        return 0.0
    p, r = tp / len(predicted), tp / len(truth)
    return 2 * p * r / (p + r)


# --- scoring rows ----------------------------------------------------------------------


@pytest.mark.parametrize("rows", [0, 1, 7, 9, 40])
def test_log_softmax_normaliser_matches_the_direct_formula(rows):
    """The blocked, threaded log-sum-exp of logits rows (what every scored row pays
    for) gives the whole-array formula's values, for row counts below, at and above a
    block and split over threads; a row with a huge logit does not overflow."""
    from aotcc.llama.backend import _logsumexp_rows

    x = np.random.default_rng(rows).standard_normal((rows, 262_144), dtype=np.float32) * 4
    if rows:
        x[-1, 123] = 1e4
    m = x.max(axis=1) if rows else np.zeros(0, np.float32)
    direct = (m + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))).astype(np.float32)
    got = _logsumexp_rows(x)
    assert got.shape == (rows,) and got.dtype == np.float32
    np.testing.assert_array_equal(got, direct)


# --- boundaries ----------------------------------------------------------------------


def test_model_boundaries_beat_fixed_size_chunks(engine, shared_cache):
    spec = {"terms": [{"name": "Sourdough", "definition": "Bread leavened by a culture of wild yeast."}]}
    truth = set()
    pos = 0
    for t in TOPICS[:-1]:
        pos += len(t) + 1
        truth.add(pos)
    fixed = aotcc.compile(SHIFT_TEXT, spec, budget=SHIFT_BUDGET)
    a = analyze(SHIFT_TEXT, spec, engine=engine, cache_dir=shared_cache, budget=SHIFT_BUDGET, semantic=False)
    fixed_b = set(fixed.chunks.src_start.tolist()[1:])
    model_b = set(a.compiled.chunks.src_start.tolist()[1:])
    f_fixed, f_model = _f1(fixed_b, truth), _f1(model_b, truth)
    assert f_model > f_fixed, (f_model, f_fixed, sorted(model_b), sorted(truth), a.breaks)
    assert f_model >= 0.6, (f_model, sorted(model_b), sorted(truth))
    # every chunk stays within the budget, and the report names the model for its cuts
    assert max(a.compiled.chunks.tokens.tolist()) <= SHIFT_BUDGET
    reasons = {b.offset: b.reason for b in a.boundaries}
    assert any(reasons[o] == "model" for o in model_b & truth)
    assert a.calls.windows >= 1 or a.cache.total("hits") >= 1


def test_windows_cover_a_prompt_longer_than_the_context(engine, shared_cache):
    """A source several times n_ctx is scored in windows, not refused."""
    text = ("\n\n".join(TOPICS) + "\n\n") * 4
    units = segment(text)
    from aotcc.analyze import boundaries

    counts = boundaries.unit_tokens(engine, text, units)
    assert sum(counts) > engine.N_CTX
    ws = boundaries.windows(text, units, counts)
    assert len(ws) > 2 and ws[0].start == 0 and ws[-1].end == len(text)
    b = boundaries.analyse(engine, Cache(shared_cache), text, units, 256)
    assert np.isfinite(b.onset).sum() >= len(units) - 1


# --- semantic first appearance -------------------------------------------------------


def _term(c: aotcc.Compiled, name: str):
    return next(t for t in c.terms if t.name == name)


def test_paraphrase_moves_definition_to_its_chunk(engine, shared_cache):
    text = SECTION_INTRO + PARAPHRASE + TAIL
    a = analyze(text, REFUND_SPEC, engine=engine, cache_dir=shared_cache, budget=SEM_BUDGET, boundaries=False)
    plain = aotcc.compile(text, REFUND_SPEC, budget=SEM_BUDGET)
    para_at = text.index("When a customer is unhappy")
    starts = a.compiled.chunks.src_start
    para_chunk = int(np.searchsorted(starts, para_at, side="right")) - 1
    literal = _term(plain, "Refund Policy").first_chunk
    assert literal is not None and para_chunk < literal
    assert _term(a.compiled, "Refund Policy").first_chunk == para_chunk, (a.candidates, a.anchors)
    assert "Refund Policy" in a.anchors and a.moves and a.moves[0].term == "Refund Policy"
    # the definition block sits in that chunk, once: the literal mention does not repeat it
    assert "Customers can get their money back" in a.compiled.chunk_text(para_chunk)
    assert a.compiled.text.count("Customers can get their money back") == 1
    # a term whose literal mention comes first is not moved
    assert _term(a.compiled, "Express Delivery").first_chunk == _term(plain, "Express Delivery").first_chunk
    # no yes/no unless asked; with --confirm, the model is asked and says yes here, at
    # most top-k questions per term (linear cost)
    assert a.calls.confirmations == 0 and all(c.margin is None for c in a.candidates)
    asked = analyze(text, REFUND_SPEC, engine=engine, cache_dir=shared_cache, budget=SEM_BUDGET, boundaries=False,
                    confirm=True)
    assert 1 <= asked.calls.confirmations + asked.cache.hits.get("confirmation", 0) <= 3 * len(REFUND_SPEC["terms"])
    assert asked.anchors == a.anchors and asked.candidates[0].margin is not None


def test_a_sentence_anchors_only_the_term_it_is_most_about(engine, shared_cache):
    """On the real example prompt (29 terms, no deliberate paraphrase), the opening
    paragraphs are close to nearly every term, and as the earliest shortlisted sentence
    they anchored 26 of them (several to one paragraph). A sentence is now a candidate
    only for the term it is closest to, so no sentence anchors two terms, and most
    definitions stay at their literal first mention."""
    a = analyze(EXAMPLE_PROMPT, EXAMPLE_TERMS, engine=engine, cache_dir=shared_cache, boundaries=False)
    units = [c.unit for c in a.candidates]
    assert len(units) == len(set(units)), [(c.term, c.unit) for c in a.candidates]
    assert len(a.anchors) < len(a.compiled.terms) / 2, a.anchors


def test_no_paraphrase_no_move(engine, shared_cache):
    text = SECTION_INTRO + UNRELATED + TAIL
    a = analyze(text, REFUND_SPEC, engine=engine, cache_dir=shared_cache, budget=SEM_BUDGET, boundaries=False)
    plain = aotcc.compile(text, REFUND_SPEC, budget=SEM_BUDGET)
    assert a.anchors == {}, a.candidates
    assert a.moves == []
    assert a.compiled.hash == plain.hash
    # the earlier units were embedded and compared (nothing close enough to confirm)
    assert a.calls.embeddings + a.cache.hits.get("embedding", 0) >= 4


# --- cache ---------------------------------------------------------------------------


def test_edit_one_paragraph_reruns_only_what_changed(engine, tmp_path):
    text = "# Notes\n\n" + "\n\n".join(TOPICS) + "\n\n" + SECTION_INTRO + PARAPHRASE + TAIL
    a1 = analyze(text, REFUND_SPEC, engine=engine, cache_dir=tmp_path, budget=SEM_BUDGET * 2)
    again = analyze(text, REFUND_SPEC, engine=engine, cache_dir=tmp_path, budget=SEM_BUDGET * 2)
    assert again.calls.total == 0 and again.cache.total("misses") == 0
    assert again.compiled.hash == a1.compiled.hash
    edited = text.replace("Volcanic soil is very fertile once it cools and weathers.",
                          "Volcanic soil becomes rich farmland after many years.")
    assert edited != text
    a2 = analyze(edited, REFUND_SPEC, engine=engine, cache_dir=tmp_path, budget=SEM_BUDGET * 2)
    old_units = {text[u.start:u.end].strip() for u in segment(text)}
    new_units = [edited[u.start:u.end].strip() for u in segment(edited)]
    changed = [u for u in new_units if u not in old_units]
    assert len(changed) == 1
    assert a1.windows >= 3
    assert 1 <= a2.calls.windows <= 2, a2.calls.to_dict()  # its window, and the one whose prefix it is
    assert a2.calls.embeddings <= len(changed)
    assert a2.calls.total < a1.calls.total / 3, (a1.calls.to_dict(), a2.calls.to_dict())
    assert a2.cache.total("hits") > 0


def test_corrupt_cache_entry_is_rebuilt_and_reported(cli, engine, tmp_path):
    prompt = tmp_path / "p.md"
    prompt.write_text(SECTION_INTRO + PARAPHRASE + TAIL)
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps(REFUND_SPEC))
    cache = tmp_path / "cache"
    args = [prompt, "-t", spec, "--budget", SEM_BUDGET, "--cache", cache, "--no-boundaries", "-o", tmp_path / "a.aotc"]
    r1 = cli("analyze", *args, "--json")
    assert r1.code == 0, r1.err
    first = json.loads(r1.out)
    entries = sorted(cache.rglob("*.json"))
    assert entries
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # truncated
    entries[-1].write_text(entries[-1].read_text().replace('"crc":', '"crc": 1, "x":'))  # edited
    r2 = cli("analyze", *args)
    assert r2.code == 0, r2.err
    assert "2 corrupt entries rebuilt" in r2.err and r2.err.count("corrupt cache entry rebuilt") == 2, r2.err
    r3 = cli("analyze", *args, "--json")
    third = json.loads(r3.out)
    assert third["cache"]["corrupt"] == [] and sum(third["cache"]["misses"].values()) == 0
    assert third["anchors"] == first["anchors"] and third["boundaries"] == first["boundaries"]


# --- drafting ------------------------------------------------------------------------


def test_draft_terms_parses_and_compiles(cli, tmp_path, shared_cache):
    prompt = tmp_path / "agent.md"
    prompt.write_text(GLOSSARY_PROMPT)
    out = tmp_path / "terms.toml"
    r = cli("analyze", "--draft-terms", prompt, "-o", out, "--cache", shared_cache, "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    text = out.read_text()
    assert text.startswith("# Term spec drafted by `aotcc analyze --draft-terms`")
    spec_json, _ = load_spec(out)
    names = [t["name"] for t in json.loads(spec_json)["terms"]]
    for name in ("Relay Hub", "Advance Replacement", "Goodwill Credit"):
        assert name in names
    ar = next(t for t in json.loads(spec_json)["terms"] if t["name"] == "Advance Replacement")
    assert ar["aliases"] == ["AR"]
    for name in info["proposed_by_model"]:  # every model proposal is marked for review
        assert f'# proposed by the model: review\n[[term]]\nname = "{name}"' in text
    assert info["model_calls"]["generations"] >= 1 or sum(info["cache"]["hits"].values()) >= 1
    c = aotcc.compile(prompt, out)
    assert c.manifest["injected"] >= 3
    r2 = cli("compile", prompt, "-t", out, "-o", tmp_path / "x.aotc")
    assert r2.code == 0, r2.err


def test_grammar_constrained_generation_is_valid_json(engine, shared_cache):
    answer, stop = draft_mod._ask(engine, Cache(shared_cache), GLOSSARY_PROMPT)
    items = draft_mod.parse_answer(answer)
    assert items is not None, (answer, stop)
    assert stop in ("eog", "grammar"), stop


def test_extractor_finds_glossary_shapes():
    got = draft_mod.extract(GLOSSARY_PROMPT)
    assert [(e.name, e.aliases) for e in got] == [
        ("Relay Hub", []), ("Advance Replacement", ["AR"]), ("Goodwill Credit", [])]
    assert got[0].definition.startswith("The central router") and got[0].line == 7


# --- bad input -----------------------------------------------------------------------


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def test_bad_model_exits_2(cli, tmp_path):
    prompt = tmp_path / "p.md"
    prompt.write_text("Hello there. The Refund Policy applies.\n")
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps(REFUND_SPEC))
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    r = cli("analyze", prompt, "-t", spec, "--model", fake, "--cache", tmp_path / "c")
    assert r.code == 2 and "model.gguf" in _one_line(r.err) and "not a GGUF file" in r.err
    r = cli("analyze", prompt, "-t", spec, "--model", tmp_path / "missing.gguf")
    assert r.code == 2 and "no such file" in _one_line(r.err)
    r = cli("compile", "--analyze=" + str(fake), prompt, "-t", spec, "-o", tmp_path / "o.aotc")
    assert r.code == 2 and "not a GGUF file" in _one_line(r.err)
    assert not (tmp_path / "o.aotc").exists()


def test_bad_input_exits_2(cli, tmp_path):
    prompt = tmp_path / "p.md"
    prompt.write_text("Hello there.\n")
    r = cli("analyze", prompt)
    assert r.code == 2 and "--terms" in _one_line(r.err)
    r = cli("analyze", "--draft-terms", prompt, "-o", tmp_path / "nodir" / "t.toml")
    assert r.code == 2 and "does not exist" in _one_line(r.err)
    r = cli("analyze", "--draft-terms", prompt, "-o", tmp_path / "t.json")
    assert r.code == 2 and ".toml" in _one_line(r.err)
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"ok \xff\xfe bytes\n")
    r = cli("analyze", "--draft-terms", bad, "-o", tmp_path / "t.toml", "--no-model-draft")
    assert r.code == 2 and "invalid UTF-8 at byte 3" in _one_line(r.err)
    r = cli("analyze", "--draft-terms", prompt, "-o", tmp_path / "t.toml", "--no-model-draft")
    assert r.code == 2 and "no glossary-shaped lines" in _one_line(r.err)
    assert not (tmp_path / "t.toml").exists()


def test_compile_analyze_flag(cli, tmp_path, shared_cache, monkeypatch):
    monkeypatch.setenv("AOTCC_CACHE_DIR", str(shared_cache.parent / "compile-flag-cache"))
    prompt = tmp_path / "p.md"
    prompt.write_text(SECTION_INTRO + PARAPHRASE + TAIL)
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps(REFUND_SPEC))
    r = cli("compile", prompt, "-t", spec, "--budget", SEM_BUDGET, "-o", tmp_path / "a.aotc", "--analyze")
    assert r.code == 0, r.err
    assert "model calls:" in r.err and "moved 'Refund Policy'" in r.err
    c = aotcc.load(tmp_path / "a.aotc")
    assert c.decompile() == prompt.read_text()
