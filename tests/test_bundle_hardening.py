"""Forged bundle fingerprints (issue 14, class 4): the fingerprint's BLAKE3 is valid (a
forger computes it), so every field is checked for type and bounded by the file, the
format and the model before anything is allocated for it. Most checks need no model;
the last ones run against the real Gemma 3 270M."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys

import pytest

import bundle_forge as forge
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS, ROOT


def one_line(err: str, prefix: str = "aotcc: ") -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    return lines[0]


@pytest.fixture
def good(tmp_path):
    return forge.make(tmp_path / "good.aotkv")


def _refused(path, *needles):
    from aotcc.errors import BundleFormatError
    from aotcc.llama.bundle import Bundle

    with pytest.raises(BundleFormatError) as e:
        b = Bundle.open(path)
        b.verify_payload()
        b.llama_server_state(io.BytesIO())
    msg = str(e.value)
    assert path.name in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_good_synthetic_bundle_opens(good):
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(good)
    b.verify_payload()
    out = io.BytesIO()
    assert b.llama_server_state(out) == 12 + 4 * b.n_tokens + b.raw_size - 8


@pytest.mark.parametrize("field,value,needle", [
    (["context", "n_ctx"], 2_000_000_000, "context.n_ctx is 2000000000, outside"),
    (["context", "n_ctx"], -1, "context.n_ctx is -1"),
    (["context", "n_ctx"], 2.5, "context.n_ctx has the wrong type (float)"),
    (["context", "type_k"], "q9_9", "not a KV type"),
    (["context", "flash_attn"], 1, "context.flash_attn has the wrong type"),
    (["prompt", "n_tokens"], 0, "prompt.n_tokens is 0"),
    (["prompt", "n_tokens"], 300, "300 prompt tokens do not fit n_ctx 256"),
    (["prompt", "tokens"], "abcd", "prompt.tokens has the wrong type (str)"),
    (["payload", "block"], 1, "payload.block is 1, outside"),
    (["payload", "block"], 2**62, "payload.block"),
    (["payload", "crc32"], ["x"], "checksum table holds a value that is not a CRC-32"),
    (["payload", "crc32"], [2**40], "not a CRC-32"),
    (["payload", "raw_size"], 2**60, "payload has 20,000 bytes, fingerprint says"),
    (["payload", "raw_size"], -5, "payload.raw_size is -5"),
    (["payload", "codec"], "lz4", "unknown payload codec"),
    (["prompt", "template"], "gemma", "prompt.template has the wrong type (str)"),
    (["prompt", "template"], {"name": 3}, "prompt.template.name has the wrong type (int)"),
    (["prompt", "template"], {"name": "x"}, "fingerprint has no field prompt.template.source_blake3"),
    (["llama", "state_seq_version"], 2**40, "llama.state_seq_version"),
    (["model", "file"], ["a"], "model.file has the wrong type"),
    (["model", "n_layer"], 10**9, "model.n_layer"),
    (["created_by"], {"x": 1}, "created_by has the wrong type"),
])
def test_forged_fields_are_refused(tmp_path, good, field, value, needle):
    def edit(fp):
        node = fp
        for k in field[:-1]:
            node = node[k]
        node[field[-1]] = value

    _refused(forge.forge(good, tmp_path / "forged.aotkv", edit), needle)


def test_quantized_v_cache_without_flash_attention(tmp_path, good):
    _refused(forge.forge(good, tmp_path / "qv.aotkv", lambda fp: fp["context"].update(type_v="q8_0", flash_attn=False)),
             "quantized V cache (q8_0) without flash attention")


def test_forged_template_with_right_fields_but_wrong_types(tmp_path, good):
    t = {"name": "gemma", "source_blake3": "0", "system_prefix": "<s>", "user_prefix": None, "assistant_prefix": "a",
         "turn_separator": "b"}
    _refused(forge.forge(good, tmp_path / "t.aotkv", lambda fp: fp["prompt"].__setitem__("template", t)),
             "prompt.template.user_prefix has the wrong type (NoneType)")


def test_values_that_are_not_plain_data(tmp_path, good):
    import msgpack

    fp, pl = forge.read(good)
    fp["model"]["blob"] = msgpack.ExtType(5, b"x")
    bad = forge.write_raw(tmp_path / "ext.aotkv", msgpack.packb(fp, use_bin_type=True), pl)
    _refused(bad, "unexpected ExtType value")
    fp, pl = forge.read(good)
    fp["context"]["n_batch"] = float("nan")
    bad = forge.write_raw(tmp_path / "nan.aotkv", msgpack.packb(fp, use_bin_type=True), pl)
    _refused(bad, "only finite numbers")
    deep: list = []
    for _ in range(200):
        deep = [deep]
    fp, pl = forge.read(good)
    fp["created_by"] = deep
    bad = forge.write_raw(tmp_path / "deep.aotkv", msgpack.packb(fp, use_bin_type=True), pl)
    _refused(bad, "nested more than")


def test_a_huge_fingerprint_length_is_refused_before_reading(tmp_path, good):
    from aotcc.llama import bundle as aotkv

    data = bytearray(good.read_bytes())
    h = list(aotkv.HEADER.unpack(data[:128]))
    h[4] = aotkv.MAX_FINGERPRINT_BYTES + 1  # fingerprint length
    h[5] = -(-(128 + h[4]) // 4096) * 4096
    data[:128] = aotkv.HEADER.pack(*h)
    bad = tmp_path / "longfp.aotkv"
    bad.write_bytes(bytes(data))
    _refused(bad, "at most")


def test_zstd_bomb_is_refused_without_expanding_it(tmp_path, good):
    bomb = forge.zstd_bomb(4 << 30)  # 4 GiB of zeros in ~130 KB
    forged = forge.forge(good, tmp_path / "bomb.aotkv",
                     lambda fp: fp["payload"].update(codec="zstd", raw_size=4 << 30), payload=bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(forged, "claims to expand to 4,294,967,296")
    # within the 64x ratio, but the frame says 4 GiB: refused from its header, nothing expanded
    wide = {"n_embd": 1 << 16}  # a model shape for which such a state is not impossible
    declared = forge.forge(good, tmp_path / "declared.aotkv", lambda fp: fp["model"].update(wide) or
                       fp["payload"].update(codec="zstd", raw_size=60 * len(bomb)), payload=bomb)
    _refused(declared, "zstd frame declares 4,294,967,296 bytes")
    # no declared size at all
    nosize = forge.zstd_bomb(1 << 30, content_size=False)
    forged = forge.forge(good, tmp_path / "nosize.aotkv", lambda fp: fp["model"].update(wide) or
                     fp["payload"].update(codec="zstd", raw_size=60 * len(nosize)), payload=nosize)
    _refused(forged, "declares no size")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 200_000, f"peak memory grew by {grown} KB"


def test_zstd_frames_that_lie_are_refused(tmp_path, good):
    body = forge.state(50_000, seed=3)
    frame = forge.zstd(body)
    ok = forge.forge(good, tmp_path / "ok.aotkv", lambda fp: fp["payload"].update(codec="zstd", raw_size=len(body)), payload=frame)
    from aotcc.llama.bundle import Bundle

    with Bundle.open(ok).payload() as view:
        assert bytes(view) == body
    _refused(forge.forge(good, tmp_path / "trail.aotkv", lambda fp: fp["payload"].update(codec="zstd", raw_size=len(body)),
                     payload=frame + b"trailing"), "bytes after its frame")
    _refused(forge.forge(good, tmp_path / "small.aotkv", lambda fp: fp["payload"].update(codec="zstd", raw_size=len(body) - 1),
                     payload=frame), "frame declares")
    cut = frame[: len(frame) // 2]
    _refused(forge.forge(good, tmp_path / "cut.aotkv", lambda fp: fp["payload"].update(codec="zstd", raw_size=len(body)),
                     payload=cut), "zstd")
    flipped = bytearray(frame)
    flipped[-1] ^= 0xFF  # the content checksum
    _refused(forge.forge(good, tmp_path / "sum.aotkv", lambda fp: fp["payload"].update(codec="zstd", raw_size=len(body)),
                     payload=bytes(flipped)), "zstd payload does not decompress")


def test_raw_size_bounded_by_the_model_shape(tmp_path, good):
    big = forge.state(2_000_000, seed=1)  # 2 MB of state for 40 tokens of a 2-layer, 64-wide model: impossible
    _refused(forge.forge(good, tmp_path / "wide.aotkv", lambda fp: fp["payload"].update(raw_size=len(big)), payload=big),
             "is more than a state of 40 tokens can be")


def test_cli_verify_and_export_refuse_forged_bundles(cli, tmp_path, good):
    forged = forge.forge(good, tmp_path / "n_ctx.aotkv", lambda fp: fp["context"].update(n_ctx=2_000_000_000))
    r = cli("export", "--llama-server", forged, "-o", tmp_path / "slot.bin")
    assert r.code == 2 and "context.n_ctx is 2000000000" in one_line(r.err, "aotcc: error: ")
    assert not (tmp_path / "slot.bin").exists()
    r = cli("verify", forged)  # a bundle that would be refused: exit 1, whatever the model
    assert r.code == 1 and "context.n_ctx is 2000000000" in one_line(r.err, "aotcc: check failed: ")
    r = cli("verify", forged, "--json")
    assert r.code == 1 and json.loads(r.out)["ok"] is False


# --- against the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import llama_cpp  # noqa: F401  (`make test` installs it; missing, these tests fail rather than skip)

    d = tmp_path_factory.mktemp("real")
    excerpt = d / "excerpt.md"
    excerpt.write_text("\n\n".join(EXAMPLE_PROMPT.read_text().split("\n\n")[:4]) + "\n")
    art = d / "excerpt.aotc"
    env = {"AOTCC_PROGRESS": "0"}
    for args in (("compile", excerpt, "--terms", EXAMPLE_TERMS, "-o", art, "-q"),
                 ("prefill", art, "-o", d / "real.aotkv", "--ctx", "2048", "-q")):
        r = subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                           env={**__import__("os").environ, **env})
        assert r.returncode == 0, r.stderr
    return d / "real.aotkv"


@pytest.mark.model
def test_verify_exits_1_for_check_failures(cli, tmp_path, real):
    import numpy as np

    out_of_vocab = forge.forge(real, tmp_path / "vocab.aotkv", lambda fp: fp["prompt"].update(
        tokens=np.full(fp["prompt"]["n_tokens"], 10**9, dtype="<i4").tobytes()))
    r = cli("verify", out_of_vocab)
    assert r.code == 1 and "token ids outside the model's vocabulary" in one_line(r.err, "aotcc: check failed: ")
    too_long = forge.forge(real, tmp_path / "long.aotkv", lambda fp: fp["context"].update(n_ctx=fp["prompt"]["n_tokens"]))
    r = cli("verify", too_long)
    assert r.code == 1 and "prompt tokens do not fit n_ctx" in one_line(r.err, "aotcc: check failed: ")
    huge_ctx = forge.forge(real, tmp_path / "ctx.aotkv", lambda fp: fp["context"].update(n_ctx=1 << 24))
    r = cli("verify", huge_ctx)
    assert r.code == 1 and "bundle field context.n_ctx: bundle has 16777216, runtime has at most" in one_line(r.err, "aotcc: check failed: ")
    fat = forge.forge(real, tmp_path / "fat.aotkv", lambda fp: fp["model"].update(n_embd=10**6) or fp["payload"].update(
        codec="zstd", raw_size=60 * len(forge.zstd(forge.state(100_000)))), payload=forge.zstd(forge.state(100_000)))
    r = cli("verify", fat)
    assert r.code == 1 and ("zstd" in r.err or "more than a state" in r.err)


@pytest.mark.model
def test_run_refuses_a_huge_context_before_allocating_it(tmp_path, real):
    forged = forge.forge(real, tmp_path / "ctx.aotkv", lambda fp: fp["context"].update(n_ctx=2_000_000_000))
    big = forge.forge(real, tmp_path / "ctx2.aotkv", lambda fp: fp["context"].update(n_ctx=1 << 24))
    for f in (forged, big):
        # 2 GB of address space: enough for the model, never for a 2e9-cell (or 16M-cell) KV cache
        code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
                "from aotcc.cli import main; sys.exit(main(sys.argv[1:]))")
        r = subprocess.run([sys.executable, "-c", code, "run", str(f), "-p", "hi", "-n", "1"], capture_output=True,
                           text=True, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        msg = one_line(r.stderr, "aotcc: error: ")
        assert "n_ctx" in msg and ("outside" in msg or "at most" in msg), msg  # refused by aotcc, not by a failed allocation


@pytest.mark.model
def test_llama_cpp_refusing_a_state_names_the_bundle(cli, tmp_path, real):
    body = forge.state(100_000, seed=5)  # the right prefix, then noise llama.cpp cannot parse
    forged = forge.forge(real, tmp_path / "noise.aotkv", lambda fp: fp["payload"].update(raw_size=len(body)), payload=body)
    r = cli("run", forged, "-p", "hi", "-n", "1")
    assert r.code == 2
    msg = one_line(r.err, "aotcc: error: ")
    assert "noise.aotkv" in msg and "llama.cpp refused the state" in msg
