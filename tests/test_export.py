"""Provider export on the shipped example (`examples/support_agent.md` + its term spec):
every target's request bodies validate against schemas of the providers' documented
shapes and limits (tests/schemas/); Anthropic breakpoints sit at chunk boundaries, never
inside a definition block or tag, and each cached segment meets the family minimum;
exports are byte-stable; an edit in the last chunk keeps earlier cached blocks; `--check`
names a first-chunk edit; the estimate matches hand-computed figures; bad input exits 2.
No model is needed, except for the one `model` test that exports a real KV bundle.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aotcc
from aotcc import export as ex
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

SCHEMAS = Path(__file__).resolve().parent / "schemas"
BODY_SCHEMA = {
    "messages": "anthropic_messages.json",
    "chat.completions": "openai_chat.json",
    "responses": "openai_responses.json",
    "cachedContents.create": "gemini_cached_content.json",
    "generateContent": "gemini_generate.json",
    "completion": "llama_server_completion.json",
    "slots.restore": "llama_server_restore.json",
}
TAG_OPEN = re.compile(r"<__[A-Z0-9_]+__")


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def validate_document(doc: dict) -> None:
    jsonschema.Draft202012Validator(schema("export_document.json")).validate(doc)
    for req in doc["requests"]:
        jsonschema.Draft202012Validator(schema(BODY_SCHEMA[req["name"]])).validate(req["body"])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


def compile_to(cli, out: Path, prompt: Path = EXAMPLE_PROMPT, terms: Path = EXAMPLE_TERMS) -> Path:
    r = cli("compile", prompt, "--terms", terms, "-o", out, "-q")
    assert r.code == 0, r.err
    return out


@pytest.fixture(scope="module")
def artifact(work) -> Path:
    from aotcc.cli import main

    out = work / "support.aotc"
    assert main(["compile", str(EXAMPLE_PROMPT), "--terms", str(EXAMPLE_TERMS), "-o", str(out), "-q"]) == 0
    return out


def export_doc(cli, artifact: Path, out: Path, *args: str) -> dict:
    r = cli("export", artifact, "-o", out, *args)
    assert r.code == 0, r.err
    return json.loads(out.read_text())


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--target", "anthropic"),
    ("--target", "anthropic", "--model", "claude-haiku-4-5-20251001", "--ttl", "1h", "--max-tokens", "300"),
    ("--target", "anthropic", "--breakpoints", "2"),
    ("--target", "openai"),
    ("--target", "openai", "--api", "responses", "--model", "gpt-5", "--prompt-cache-key", "support-v1", "--ttl", "24h"),
    ("--target", "gemini"),
    ("--target", "gemini", "--model", "gemini-2.5-pro", "--ttl", "2h", "--gemini-as", "user"),
    ("--target", "llama-server"),
    ("--llama-server", "--slot", "3", "--server", "http://10.0.0.2:8081/"),
], ids=lambda a: " ".join(a))
def test_every_target_validates_against_its_schema(cli, work, artifact, args):
    doc = export_doc(cli, artifact, work / "doc.json", *args)
    validate_document(doc)
    compiled = aotcc.load(artifact)
    assert ex.static_prefix(doc) == compiled.text  # the whole compiled prompt, byte for byte, first
    body = [r for r in doc["requests"] if r["name"] == doc["cache"]["prefix_request"]][0]["body"]
    assert ex.DYNAMIC in json.dumps([r["body"] for r in doc["requests"]])
    if doc["target"] == "openai":  # the dynamic slot is the last thing in the prompt
        last = body["messages"][-1]["content"] if "messages" in body else body["input"]
        assert last == ex.DYNAMIC
    if doc["target"] == "llama-server":
        assert body["prompt"] == compiled.text + ex.DYNAMIC and body["cache_prompt"] is True


def test_schemas_reject_what_the_providers_reject(cli, work, artifact):
    doc = export_doc(cli, artifact, work / "a.json", "--target", "anthropic")
    body = doc["requests"][0]["body"]
    v = jsonschema.Draft202012Validator(schema("anthropic_messages.json"))
    five = dict(body, system=[{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)])
    assert not v.is_valid(five)  # more than 4 breakpoints
    assert not v.is_valid(dict(body, system=[{"type": "text", "text": " \n"}]))  # empty text block
    assert not v.is_valid(dict(body, system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]))
    g = export_doc(cli, artifact, work / "g.json", "--target", "gemini")
    gen = g["requests"][1]["body"]
    assert not jsonschema.Draft202012Validator(schema("gemini_generate.json")).is_valid(
        dict(gen, systemInstruction={"parts": [{"text": "x"}]}))  # a cached request may not set one
    create = g["requests"][0]["body"]
    assert not jsonschema.Draft202012Validator(schema("gemini_cached_content.json")).is_valid(dict(create, ttl="1h"))


# --- breakpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("model,limit", [
    ("claude-sonnet-4-5", None), ("claude-sonnet-4-5", "1"), ("claude-sonnet-4-5", "2"),
    ("claude-3-5-haiku-20241022", None), ("claude-haiku-4-5", None), ("claude-opus-4-1-20250805", "3"),
])
def test_breakpoints_sit_at_chunk_boundaries_and_meet_the_minimum(cli, work, artifact, model, limit):
    extra = ("--breakpoints", limit) if limit else ()
    doc = export_doc(cli, artifact, work / "bp.json", "--target", "anthropic", "--model", model, *extra)
    c = aotcc.load(artifact)
    fam, _ = ex.provider("anthropic").family(model)
    blocks = doc["requests"][0]["body"]["system"]
    marked = [b for b in blocks if "cache_control" in b]
    assert 1 <= len(marked) <= (int(limit) if limit else 4)
    assert "cache_control" in blocks[-1]  # the whole static prefix is cached
    # block edges are chunk edges
    edges, pos = [], 0
    for b in blocks:
        pos += len(b["text"])
        edges.append(pos)
    chunk_ends = {int(e) for e in c.chunks.out_end}
    assert set(edges) <= chunk_ends
    # no definition block, reference tag or annotation crosses an edge
    sm = c.source_map
    for s, e, kind in zip(sm.out_start, sm.out_end, sm.kind):
        if kind != 0:
            assert not any(s < edge < e for edge in edges), (int(s), int(e), edges)
    for b in blocks:  # and each block holds whole elements: every opened definition closes inside it
        opens = re.findall(r"<(__[A-Z0-9_]+__) term=", b["text"])
        closes = re.findall(r"</(__[A-Z0-9_]+__)>", b["text"])
        assert opens == closes
        assert not re.search(r"<[^>]*$", b["text"]) and not re.match(r"^[^<]*>", b["text"])
    # every cached segment meets the family minimum, counted as the document says
    counts = [int(t) for t in c.chunks.out_tokens]
    for seg in doc["cache"]["segments"]:
        a, z = seg["chunks"]
        assert seg["tokens"] == sum(counts[a : z + 1]) >= fam.min_cache_tokens
    assert doc["cache"]["breakpoints"] == len(marked)


def test_prefix_below_the_minimum_gets_no_breakpoint_and_a_warning(cli, work):
    small = work / "small.md"
    small.write_text("\n\n".join(EXAMPLE_PROMPT.read_text().split("\n\n")[:3]) + "\n")
    art = compile_to(cli, work / "small.aotc", small)
    r = cli("export", art, "--target", "anthropic", "--model", "claude-haiku-4-5", "-o", work / "small.json")
    assert r.code == 0
    assert "below the 4,096-token minimum of claude-haiku-4.5" in r.err
    doc = json.loads((work / "small.json").read_text())
    validate_document(doc)
    assert doc["cache"]["cacheable"] is False
    assert all("cache_control" not in b for b in doc["requests"][0]["body"]["system"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=60), st.sampled_from([1, 512, 1024, 2048, 4096]),
       st.integers(1, 4), st.integers(0, 40))
def test_place_breakpoints_properties(tokens, minimum, limit, delta):
    cuts = ex.place_breakpoints(tokens, minimum, limit)
    total = sum(tokens)
    if total < minimum:
        assert cuts == []
        return
    assert cuts and cuts[-1] == len(tokens) - 1 and len(cuts) <= limit
    assert cuts == sorted(set(cuts))
    bounds = [-1] + cuts
    for a, b in zip(bounds, bounds[1:]):
        assert sum(tokens[a + 1 : b + 1]) >= minimum
    # growing the last chunk keeps every earlier cut while the total stays in its size band
    band = max(minimum, 1) * limit
    grown = tokens[:-1] + [tokens[-1] + delta]
    if math.ceil(total / band) == math.ceil(sum(grown) / band) and len(tokens) > 1:
        again = ex.place_breakpoints(grown, minimum, limit)
        assert again[: len(cuts) - 1] == cuts[:-1]  # a tail that grew past the minimum may add a cut after them


# --- stability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["anthropic", "openai", "gemini", "llama-server"])
def test_exporting_twice_gives_identical_bytes(cli, work, artifact, target):
    a = work / f"twice-a-{target}.json"
    b = work / f"twice-b-{target}.json"
    export_doc(cli, artifact, a, "--target", target)
    again = compile_to(cli, work / f"again-{target}.aotc")  # a fresh compile of the same inputs, too
    export_doc(cli, again, b, "--target", target)
    assert a.read_bytes() == b.read_bytes()
    assert ex.export_request(aotcc.load(artifact), target).to_json() == a.read_bytes()  # Python API = CLI


def _edited_prompt(work: Path, name: str, old: str, new: str, where: str) -> Path:
    text = EXAMPLE_PROMPT.read_text()
    i = text.rfind(old) if where == "last" else text.find(old)
    assert i >= 0
    out = work / name
    out.write_text(text[:i] + new + text[i + len(old):])
    return out


def test_edit_in_last_chunk_keeps_every_earlier_cached_block(cli, work, artifact):
    old = export_doc(cli, artifact, work / "old-anthropic.json", "--target", "anthropic")
    c = aotcc.load(artifact)
    last = c.chunk_text(len(c.chunks) - 1)
    word = re.findall(r"\b[a-z]{6,}\b", last)[-1]
    edited = _edited_prompt(work, "last-edit.md", word, word.upper(), "last")
    art = compile_to(cli, work / "last-edit.aotc", edited)
    new = export_doc(cli, art, work / "new-anthropic.json", "--target", "anthropic")
    a, b = old["requests"][0]["body"]["system"], new["requests"][0]["body"]["system"]
    assert len(a) == len(b) >= 2
    assert a[:-1] == b[:-1] and a[-1] != b[-1]
    assert old["cache"]["chunks"][:-1] == new["cache"]["chunks"][:-1]
    r = cli("export", art, "--check", work / "old-anthropic.json")
    assert r.code == 1
    n = len(a)
    assert f"chunk {len(c.chunks) - 1} of the recompile" in r.err and f"{n - 1} of {n} breakpoints still hit" in r.err


def test_check_names_a_first_chunk_edit(cli, work, artifact):
    export_doc(cli, artifact, work / "old-openai.json", "--target", "openai")
    spec = EXAMPLE_TERMS.read_text()
    terms = work / "terms-edited.toml"
    marker = "pairs with exactly one hub"
    assert marker in spec
    terms.write_text(spec.replace(marker, "pairs with exactly one base unit"))
    art = compile_to(cli, work / "first-edit.aotc", EXAMPLE_PROMPT, terms)
    r = cli("export", art, "--check", work / "old-openai.json")
    assert r.code == 1
    line = r.err.strip()
    assert line.startswith("aotcc: check failed: ") and "\n" not in line
    assert "chunk 0 of the recompile" in line and "'Relay Node'" in line
    r = cli("export", art, "--check", work / "old-openai.json", "--json")
    assert r.code == 1
    diff = json.loads(r.out)["first_difference"]
    c = aotcc.load(artifact)
    assert diff["new_chunk"] == diff["old_chunk"] == 0 and diff["terms"][0] == "Relay Node"
    assert c.text.encode()[: diff["byte"]] == aotcc.load(art).text.encode()[: diff["byte"]]
    assert c.text.encode()[diff["byte"]] != aotcc.load(art).text.encode()[diff["byte"]]


def test_check_passes_when_only_the_dynamic_part_differs(cli, work, artifact):
    doc = export_doc(cli, artifact, work / "dyn.json", "--target", "anthropic")
    doc["requests"][0]["body"]["messages"][0]["content"] = "Who may approve an advance replacement?"
    doc["requests"][0]["body"]["max_tokens"] = 64
    (work / "dyn.json").write_text(json.dumps(doc))
    again = compile_to(cli, work / "dyn.aotc")
    r = cli("export", again, "--check", work / "dyn.json")
    assert r.code == 0, r.err
    n = doc["cache"]["breakpoints"]
    assert r.out.startswith("ok: ") and f"all {n} breakpoints hit" in r.out
    r = cli("export", again, "--check", work / "dyn.json", "--json")
    assert r.code == 0 and json.loads(r.out)["ok"] is True


def test_check_sees_a_hand_edited_cached_block(cli, work, artifact):
    doc = export_doc(cli, artifact, work / "hand.json", "--target", "gemini")
    part = doc["requests"][0]["body"]["systemInstruction"]["parts"][0]
    part["text"] = part["text"][:100] + "X" + part["text"][101:]
    (work / "hand.json").write_text(json.dumps(doc))
    r = cli("export", artifact, "--check", work / "hand.json", "--json")
    assert r.code == 1 and json.loads(r.out)["first_difference"]["char"] == 100


def test_tokenizer_recounts_the_chunks(cli, work, artifact):
    """A real byte-level BPE tokenizer.json (trained here on the example): the counts and
    the tokenizer named in the document are its own, and the estimator warning goes away."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([EXAMPLE_PROMPT.read_text()], trainer=trainers.BpeTrainer(
        vocab_size=2000, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = work / "tokenizer.json"
    tok.save(str(path))
    r = cli("export", artifact, "--target", "anthropic", "--tokenizer", path, "-o", work / "tok.json")
    assert r.code == 0 and "estimator" not in r.err
    doc = json.loads((work / "tok.json").read_text())
    c = aotcc.load(artifact)
    want = [len(tok.encode(c.chunk_text(i), add_special_tokens=False).ids) for i in range(len(c.chunks))]
    assert [ch["tokens"] for ch in doc["cache"]["chunks"]] == want
    assert doc["artifact"]["tokenizer"].startswith("tokenizers:") and doc["artifact"]["exact_token_counts"] is True
    assert cli("export", artifact, "--check", work / "tok.json", "--tokenizer", path).code == 0


# --- estimate -----------------------------------------------------------------------------------


def test_estimate_matches_hand_computed_anthropic_case():
    # 10,000 static + 500 dynamic tokens, 1,000 requests/day (one every 86.4 s < 5 min):
    # without: 1000 * 10500 * $3/MTok = $31.50
    # with:    one write 10000 * $3.75/MTok = $0.0375, 999 reads * 10000 * $0.30/MTok = $2.997,
    #          dynamic 1000 * 500 * $3/MTok = $1.50  -> $4.5345
    e = ex.estimate("anthropic", model="claude-sonnet-4-5", static_tokens=10_000, requests_per_day=1000,
                    dynamic_tokens=500)
    d = e.to_dict()
    assert d["without_cache"]["total_usd"] == 31.5
    assert d["with_cache"]["total_usd"] == 4.5345
    assert d["saved_usd_per_day"] == 26.9655
    assert d["writes_per_day"] == 1 and d["reads_per_day"] == 999
    # warm only at one request per 300 s or more often: 288/day; one read repays the write
    assert d["break_even_requests_per_day"] == 288
    slow = ex.estimate("anthropic", model="claude-sonnet-4-5", static_tokens=10_000, requests_per_day=100,
                       dynamic_tokens=500).to_dict()
    assert slow["writes_per_day"] == 100 and slow["with_cache"]["total_usd"] == 3.9  # 100*10000*3.75 + 100*500*3
    hour = ex.estimate("anthropic", model="claude-sonnet-4-5", ttl="1h", static_tokens=10_000,
                       requests_per_day=24, dynamic_tokens=0).to_dict()
    assert hour["break_even_requests_per_day"] == 24 and hour["with_cache"]["total_usd"] == 0.129  # 0.06 + 23 * 0.003


def test_estimate_matches_hand_computed_gemini_case():
    # gemini-2.5-flash: $0.30 in, reads 0.1x, storage $1/MTok/hour, ttl 1 h -> created 24x a day
    # storage 10000 * 24 h * $1 = $0.24; creations 24 * 10000 * $0.30 = $0.072;
    # reads 1000 * 10000 * $0.03 = $0.30; dynamic 1000 * 500 * $0.30 = $0.15 -> $0.762 vs $3.15
    # break-even: N * 10000 * 0.27 > 0.072e6/1e6... -> N > (24*0.30 + 24*1)/(0.30*0.9) = 115.6 -> 116
    d = ex.estimate("gemini", static_tokens=10_000, requests_per_day=1000, dynamic_tokens=500).to_dict()
    assert d["without_cache"]["total_usd"] == 3.15
    assert d["with_cache"]["total_usd"] == 0.762 and d["with_cache"]["storage_usd"] == 0.24
    assert d["break_even_requests_per_day"] == 116


def test_estimate_cli_uses_the_artifact_static_tokens(cli, artifact):
    r = cli("export", artifact, "--target", "anthropic", "--estimate", "--requests-per-day", "1000",
            "--dynamic-tokens", "500", "--output-tokens", "200", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    s = int(aotcc.load(artifact).chunks.out_tokens.sum())
    assert d["static_tokens"] == s
    out = 1000 * 200 * 15 / 1e6
    assert d["without_cache"]["total_usd"] == round(1000 * (s + 500) * 3 / 1e6 + out, 6)
    assert d["with_cache"]["total_usd"] == round((s * 3.75 + 999 * s * 0.3 + 1000 * 500 * 3) / 1e6 + out, 6)
    assert d["tokenizer"] == "estimator:v1" and d["warnings"]
    r = cli("export", artifact, "--target", "openai", "--estimate", "--requests-per-day", "5000", "--dynamic-tokens", "300")
    assert r.code == 0 and "break-even: 288 requests/day" in r.out and "without cache" in r.out
    r = cli("export", artifact, "--target", "llama-server", "--estimate", "--requests-per-day", "10", "--dynamic-tokens", "50", "--json")
    assert r.code == 0 and json.loads(r.out)["with_cache"]["prefill_tokens"] == 500


# --- provider table ------------------------------------------------------------------------------


def test_every_number_in_the_provider_table_names_a_dated_source(tmp_path):
    import tomllib

    data = tomllib.loads(ex.providers.DATA_FILE.read_text())
    for src in data["sources"].values():
        assert src["url"].startswith("https://") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", src["retrieved"])
    provs = ex.load_providers()
    for p in provs.values():
        for f in p.families:
            assert "min_cache_tokens" in f.sources
            assert f.input_price is not None or f.missing  # a price, or a note that the docs gave none
    broken = tmp_path / "p.toml"
    text = ex.providers.DATA_FILE.read_text()
    broken.write_text(text.replace('price_source = "anthropic-pricing"', 'price_source = "nowhere"', 1))
    with pytest.raises(aotcc.errors.InputError, match="nowhere"):
        ex.load_providers(broken)


# --- bad input ------------------------------------------------------------------------------------


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("aotcc: "), err
    return lines[0]


def test_bad_input_exits_2_with_a_clear_message(cli, work, artifact):
    r = cli("export", EXAMPLE_PROMPT, "--target", "anthropic")
    assert r.code == 2 and "support_agent.md: not an aotcc artifact" in one_line(r.err)
    r = cli("export", artifact, "--target", "mistral")
    assert r.code == 2 and "invalid choice: 'mistral'" in r.err
    r = cli("export", artifact, "--target", "anthropic", "--model", "claude-opus-9")
    assert r.code == 2 and "--model claude-opus-9: unknown model family for anthropic" in one_line(r.err)
    r = cli("export", artifact, "--target", "openai", "--model", "gpt-9")
    assert r.code == 2 and "unknown model family" in one_line(r.err)
    r = cli("export", work / "missing.aotc", "--target", "openai")
    assert r.code == 2 and "missing.aotc: no such file" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "--ttl", "2h")
    assert r.code == 2 and "--ttl 2h: anthropic takes 5m or 1h" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "--prompt-cache-key", "k")
    assert r.code == 2 and "openai only" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "--breakpoints", "5")
    assert r.code == 2 and "1 to 4" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "--estimate", "--requests-per-day", "10")
    assert r.code == 2 and "--dynamic-tokens" in one_line(r.err)
    r = cli("export", artifact, "--target", "gemini", "--model", "gemini-3-pro-preview", "--estimate",
            "--requests-per-day", "10", "--dynamic-tokens", "5")
    assert r.code == 2 and "--price-input" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "--json")
    assert r.code == 2 and "-o FILE" in one_line(r.err)
    r = cli("export", artifact, "--target", "anthropic", "-o", work / "nodir" / "x.json")
    assert r.code == 2 and "does not exist" in one_line(r.err)
    r = cli("export", artifact)
    assert r.code == 2 and "--target" in one_line(r.err)
    fake = work / "fake.aotkv"
    fake.write_bytes(b"\x89AOTKV\r\n" + b"\0" * 20)
    r = cli("export", fake, "--target", "anthropic")
    assert r.code == 2 and "is a KV bundle" in one_line(r.err)


@pytest.mark.parametrize("content,expect", [
    (b"{not json", "not JSON at byte 1"),
    (b'{"hello": 1}', 'not an aotcc export document'),
    (b'{"aotcc_export": 1, "target": "anthropic", "options": {}, "cache": {}, "requests": []}', "missing its static prefix"),
    (b'{"aotcc_export": 7, "target": "openai"}', "export format 7"),
    (b"\xff\xfe", "not JSON"),
])
def test_broken_check_file_exits_2(cli, work, artifact, content, expect):
    bad = work / "broken.json"
    bad.write_bytes(content)
    r = cli("export", artifact, "--check", bad)
    assert r.code == 2 and expect in one_line(r.err) and "broken.json" in r.err


def test_export_writes_nothing_on_error(cli, work, artifact):
    out = work / "never.json"
    r = cli("export", artifact, "--target", "anthropic", "--model", "nope", "-o", out)
    assert r.code == 2 and not out.exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".never")]


# --- the real llama-server path: a bundle prefilled with Gemma 3 270M ---------------------------------


@pytest.mark.model
def test_llama_server_body_restores_a_real_bundle(cli, work):
    excerpt = work / "excerpt.md"
    excerpt.write_text("\n\n".join(EXAMPLE_PROMPT.read_text().split("\n\n")[:6]) + "\n")
    art = compile_to(cli, work / "excerpt.aotc", excerpt)
    bundle = work / "excerpt.aotkv"
    r = cli("prefill", art, "-o", bundle, "--ctx", "2048", "-q")
    assert r.code == 0, r.err
    slot = work / "slot0.bin"
    doc = export_doc(cli, art, work / "ls.json", "--target", "llama-server", "--bundle", bundle, "--slot-file", slot)
    validate_document(doc)
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(bundle)
    restore, completion = doc["requests"]
    assert restore["url"].endswith("/slots/0?action=restore") and restore["body"] == {"filename": "slot0.bin"}
    assert completion["body"]["prompt"] == b.tokens.tolist() + [ex.DYNAMIC]
    legacy = work / "legacy.bin"
    assert cli("export", "--llama-server", bundle, "-o", legacy).code == 0
    assert slot.read_bytes() == legacy.read_bytes()  # the same state file the KV-bundle export writes
    other = compile_to(cli, work / "other.aotc")
    r = cli("export", other, "--target", "llama-server", "--bundle", bundle)
    assert r.code == 2 and "bundle was made from compiled prompt" in one_line(r.err)
    shutil.rmtree(work / "nodir", ignore_errors=True)
