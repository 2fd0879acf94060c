"""The Python API: numpy tables with character offsets, save/load, tokenizers counts,
determinism, and the GIL released while the core works."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import aotcc
from aotcc import SPAN_KINDS
from aotcc.errors import InputError
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

SPEC = {
    "terms": [
        {"name": "Café Rule", "aliases": ["café rules"], "definition": "Serve espresso only before noon."},
        {"name": "退款政策", "definition": "退款须在三十天内申请。"},
        {"name": "Escalation", "definition": "Hand the ticket to a supervisor; see Café Rule.", "requires": ["Café Rule"]},
    ]
}
TEXT = (
    "# Menü ☕\n\nThe Café Rule applies. 我们的退款政策很简单。\n\n"
    "- Follow the café rules 😀 always.\n- Escalation happens rarely; the CAFÉ RULE still holds.\n"
    "\nAgain: 退款政策 and Escalation.\n"
)


@pytest.fixture(scope="module")
def example() -> aotcc.Compiled:
    return aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, progress=False)


def test_tables_are_numpy_with_character_offsets():
    c = aotcc.compile(TEXT, SPEC, budget=12)
    for table in (c.chunks, c.source_map, c.occurrences):
        for name in table:
            assert isinstance(table[name], np.ndarray) and table[name].dtype == np.int64
    ch = c.chunks
    assert len(ch) > 1
    # character offsets slice the Python strings directly
    assert "".join(TEXT[s:e] for s, e in zip(ch.src_start, ch.src_end)) == TEXT
    assert "".join(c.text[s:e] for s, e in zip(ch.out_start, ch.out_end)) == c.text
    names = [t.name for t in c.terms]
    occ = c.occurrences
    for s, e, t in zip(occ.start, occ.end, occ.term):
        assert TEXT[s:e].casefold() in {a.casefold() for a in [names[t], *(["café rules"] if t == 0 else [])]}
    m = c.source_map
    kinds = {SPAN_KINDS[k] for k in m.kind}
    assert {"copy", "definition", "reference"} <= kinds
    for os_, oe, ss, se, k in zip(m.out_start, m.out_end, m.src_start, m.src_end, m.kind):
        if SPAN_KINDS[k] == "copy":
            assert c.text[os_:oe] == TEXT[ss:se]
        if SPAN_KINDS[k] == "reference":
            assert c.text[os_:oe] in {t.reference for t in c.terms if t.injected}


def test_terms_and_dependencies():
    c = aotcc.compile(TEXT, SPEC, budget=4096)
    by_name = {t.name: t for t in c.terms}
    cafe, refund, esc = by_name["Café Rule"], by_name["退款政策"], by_name["Escalation"]
    assert (cafe.id, refund.id, esc.id) == ("A", "B", "C")
    assert cafe.occurrences == 3 and cafe.references == 2
    assert esc.depends_on == ("Café Rule",)
    s, e = cafe.definition_span
    # the default short style: the id alone is the element name
    assert (cafe.tag, cafe.reference) == ("A", "<A/>")
    assert c.text[s:e] == '<A term="Café Rule">Serve espresso only before noon.</A>\n'
    assert c.text.count("<B/>") == 1
    seed = aotcc.compile(TEXT, SPEC, budget=4096, tag_style="seed")
    s, e = {t.name: t for t in seed.terms}["Café Rule"].definition_span
    assert seed.text[s:e] == '<__SYS_STATE_A__ term="Café Rule">Serve espresso only before noon.</__SYS_STATE_A__>\n'
    assert seed.text.count("<__SYS_STATE_B__ />") == 1
    assert seed.decompile() == TEXT
    assert c.decompile() == TEXT


def test_save_load_roundtrip(tmp_path, example):
    path = example.save(tmp_path / "ex.aotc")
    again = aotcc.load(path)
    assert again.hash == example.hash
    assert again.text == example.text
    assert again.decompile() == EXAMPLE_PROMPT.read_text(encoding="utf-8")
    assert np.array_equal(again.chunks.out_tokens, example.chunks.out_tokens)
    assert again.timings == {}  # not saved by default: files stay byte-identical


def test_same_inputs_give_identical_bytes(example):
    again = aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, progress=False)
    assert again.to_bytes() == example.to_bytes()
    assert again.hash == example.hash
    a, b = again.artifact, example.artifact
    assert a.text == b.text


def test_example_is_well_formed(example):
    m = example.manifest
    assert m["terms"] >= 20 and m["injected"] >= 20
    assert m["compiled_tokens"] > m["source_tokens"]
    assert all(t <= 512 for t in example.chunks.tokens)
    assert any(t.pulled_in for t in example.terms), "the example has dependencies pulled in early"
    assert [t for t in example.terms if not t.injected], "the example has an unused term"


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    """A real byte-level BPE tokenizer.json, trained here on the example prompt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([EXAMPLE_PROMPT.read_text(encoding="utf-8")], trainer=trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def test_tokenizers_backend_counts(tokenizer_json):
    from tokenizers import Tokenizer

    text = EXAMPLE_PROMPT.read_text(encoding="utf-8")
    c = aotcc.compile(text, EXAMPLE_TERMS, tokenizer=tokenizer_json, budget=256, progress=False)
    assert c.manifest["tokenizer"].startswith("tokenizers:")
    assert all(t <= 256 for t in c.chunks.tokens)
    whole = len(Tokenizer.from_file(str(tokenizer_json)).encode(text, add_special_tokens=False).ids)
    # per-unit counts add up to within a few percent of the whole-text count
    assert abs(c.manifest["source_tokens"] - whole) / whole < 0.03
    est = aotcc.compile(text, EXAMPLE_TERMS, budget=256, progress=False)
    assert est.manifest["tokenizer"] == "estimator:v1"
    assert est.hash != c.hash


def test_gguf_tokenizer_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"model\.gguf: no such GGUF file"):
        aotcc.compile("x", SPEC, tokenizer=tmp_path / "model.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a GGUF file at all")
    with pytest.raises(InputError, match=r"bogus\.gguf: .*GGUF"):
        aotcc.compile("x", SPEC, tokenizer=bogus)


def test_counter_errors_are_reported():
    def broken(pieces):
        raise RuntimeError("backend exploded")

    with pytest.raises(aotcc.errors.CountError, match="backend exploded"):
        aotcc.compile(TEXT, SPEC, tokenizer=broken)

    with pytest.raises(aotcc.errors.CountError, match="counts for"):
        aotcc.compile(TEXT, SPEC, tokenizer=lambda pieces: [1])


def test_gil_is_released_during_compile():
    from corpus import generate

    text, spec = generate(size_bytes=3_000_000)
    compiler = aotcc._core.Compiler(__import__("json").dumps(spec))
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    data = text.encode()
    t = threading.Thread(target=spin)
    t.start()
    during = []
    try:
        for _ in range(3):
            before = ticks
            compiler.compile([("c", data)])
            during.append(ticks - before)
    finally:
        stop.set()
        t.join()
    # a thread that needs the GIL kept running while the core worked
    assert max(during) > 1_000, during
