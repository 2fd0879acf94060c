"""`--tag-ids cheap`: among collision-free labels, the ones whose reference tag costs
the fewest tokens of the target tokenizer, chosen deterministically."""

from __future__ import annotations

import pytest

import aotcc
from aotcc import _core
from aotcc.errors import InputError
from aotcc.models import default_model
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS


@pytest.fixture(scope="module")
def gguf() -> str:
    return str(default_model())


def tag_cost(tok: _core.GgufTokenizer, reference: str) -> int:
    return len(tok.tokenize(reference))


def test_cheap_ids_cost_no_more_and_stay_valid(gguf):
    alpha = aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, tokenizer=gguf, progress=False)
    cheap = aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, tokenizer=gguf, progress=False, tag_ids="cheap")
    tok = _core.GgufTokenizer(gguf)
    a = [t for t in alpha.terms if t.injected]
    c = [t for t in cheap.terms if t.injected]
    assert len(a) == len(c) > 26  # past Z
    # every tag costs what the tokenizer says, and the cheap set never costs more
    for t in c:
        assert t.tag_tokens == tag_cost(tok, t.reference)
    assert sum(t.tag_tokens for t in c) <= sum(t.tag_tokens for t in a)
    # ids stay unique and absent from the source; the source still round-trips
    ids = [t.id for t in c]
    assert len(set(ids)) == len(ids)
    source = cheap.decompile()
    assert all(t.reference not in source and f"<{t.tag} " not in source for t in c)
    assert source == alpha.decompile()
    # in injection order (definition blocks in the text), labels come cheapest first;
    # terms with an explicit id in the spec keep it
    explicit = {"RMA", "P1"}
    order = sorted((t for t in c if t.id not in explicit), key=lambda t: t.definition_span[0])
    costs = [t.tag_tokens for t in order]
    assert costs == sorted(costs)
    assert {t.id for t in c} >= explicit
    # deterministic, and a different compile from the default labels
    again = aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, tokenizer=gguf, progress=False, tag_ids="cheap")
    assert again.to_bytes() == cheap.to_bytes()
    assert cheap.manifest["hashes"]["options"] != alpha.manifest["hashes"]["options"]
    assert cheap.manifest["options"]["tag_ids"] == "cheap"
    assert "tag_ids" not in alpha.manifest["options"]


def test_cheap_ids_skip_labels_that_cost_more(gguf):
    """With Gemma's vocabulary most labels cost the same, but some two-letter ones (GZ,
    OQ, …) cost a token more: with enough terms the default labels reach them and the
    cheap ids step around them."""
    n = 240
    spec = {"terms": [{"name": f"Zorp{i:03d}", "definition": f"Unit {i}."} for i in range(n)]}
    text = "\n\n".join(f"Use Zorp{i:03d} here, and Zorp{i:03d} again." for i in range(n)) + "\n"
    alpha = aotcc.compile(text, spec, tokenizer=gguf, progress=False)
    cheap = aotcc.compile(text, spec, tokenizer=gguf, progress=False, tag_ids="cheap")
    tok = _core.GgufTokenizer(gguf)
    a = {t.tag_tokens for t in alpha.terms}
    c = [t.tag_tokens for t in cheap.terms]
    assert max(a) > min(a)  # the default labels include some dearer ones
    assert max(c) == min(c) == min(a)
    assert sum(c) < sum(t.tag_tokens for t in alpha.terms)
    assert all(t.tag_tokens == tag_cost(tok, t.reference) for t in cheap.terms)
    # and the text pays for it: fewer tokens in the compiled prompt
    assert cheap.manifest["compiled_tokens"] < alpha.manifest["compiled_tokens"]


def test_cli_tag_ids(cli, tmp_path, gguf):
    out = tmp_path / "p.aotc"
    r = cli("compile", str(EXAMPLE_PROMPT), "--terms", str(EXAMPLE_TERMS), "--tokenizer", gguf,
            "--tag-ids", "cheap", "-o", str(out))
    assert r.code == 0, r.err
    assert aotcc.load(out).manifest["options"]["tag_ids"] == "cheap"
    bad = cli("compile", str(EXAMPLE_PROMPT), "--terms", str(EXAMPLE_TERMS), "--tag-ids", "short", "-o", str(out))
    assert bad.code == 2 and "--tag-ids" in bad.err


def test_bad_tag_ids_value_is_an_input_error():
    with pytest.raises(InputError, match="tag_ids"):
        aotcc.compile("text", {"terms": [{"name": "A", "definition": "x"}]}, tag_ids="short")
