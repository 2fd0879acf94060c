"""The command line on real files: compile, inspect, decompile, bench; stdin, several
files, --json, progress, and the installed `aotcc` script in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS, ROOT


def test_compile_inspect_decompile(cli, tmp_path):
    out = tmp_path / "ex.aotc"
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out)
    assert r.code == 0, r.err
    assert "chunks" in r.err and "terms injected" in r.err and r.out == ""
    r = cli("inspect", out)
    assert r.code == 0
    assert "first chunk" in r.out and "__SYS_STATE" not in r.out.split("\n")[0]
    assert "not injected (never mentioned)" in r.out
    r = cli("inspect", out, "--text")
    assert r.out.startswith('<A term="')
    r = cli("inspect", out, "--json")
    doc = json.loads(r.out)
    assert doc["manifest"]["chunks"] == len(doc["chunks"]["tokens"])
    assert {t["name"] for t in doc["terms"]} >= {"Relay Hub"}
    dec = tmp_path / "restored.md"
    assert cli("decompile", out, "-o", dec).code == 0
    assert dec.read_bytes() == EXAMPLE_PROMPT.read_bytes()


def test_compile_is_byte_identical_across_runs(cli, tmp_path):
    a, b = tmp_path / "a.aotc", tmp_path / "b.aotc"
    for o in (a, b):
        assert cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", o, "-q").code == 0
    assert a.read_bytes() == b.read_bytes()
    # with --keep-timings only the unhashed timings differ
    import msgpack

    for o in (a, b):
        assert cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", o, "-q", "--keep-timings").code == 0
    da, db = (msgpack.unpackb(p.read_bytes()) for p in (a, b))
    assert da["hash"] == db["hash"] and da["body"] == db["body"]
    assert [name for name, _ in da["timings"]] == ["read", "segment", "count", "detect", "chunk", "plan", "rewrite", "emit"]


def test_artifact_is_plain_msgpack(tmp_path, cli):
    import msgpack

    out = tmp_path / "ex.aotc"
    cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out, "-q")
    top = msgpack.unpackb(out.read_bytes())
    assert top["format"] == "aotc" and top["version"] == 1
    body = msgpack.unpackb(top["body"])
    assert body["text"].startswith("<A term=")
    assert set(body["hashes"]) == {"source", "spec", "options", "output"}
    from aotcc._core import blake3_hex

    assert blake3_hex(top["body"]) == top["hash"]
    assert blake3_hex(EXAMPLE_PROMPT.read_bytes()) == body["hashes"]["source"]


def test_stdin_and_several_files(cli, tmp_path):
    part1 = b"# Part one\nThe Relay Hub is central.\n"
    part2 = b"Restart the relay hub twice.\nNo newline at the end"
    f2 = tmp_path / "two.md"
    f2.write_bytes(part2)
    out = tmp_path / "multi.aotc"
    r = cli("compile", "-", f2, "--terms", EXAMPLE_TERMS, "-o", out, "--json", stdin=part1)
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert [f["name"] for f in m["files"]] == ["-", str(f2)]
    assert m["files"][1]["start"] == len(part1)
    r = cli("inspect", out, "--text")
    assert "Restart the <B/>" in r.out
    dec = tmp_path / "dec"
    cli("decompile", out, "-o", dec)
    assert dec.read_bytes() == part1 + part2


def test_placement_and_reference_modes(cli, tmp_path):
    texts = {}
    for placement in ("chunk", "top"):
        for refs in ("tag", "annotate", "keep"):
            out = tmp_path / f"{placement}-{refs}.aotc"
            r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out, "-q",
                    "--placement", placement, "--references", refs, "--budget", "200")
            assert r.code == 0, r.err
            texts[placement, refs] = cli("inspect", out, "--text").out
            assert cli("decompile", out).out == EXAMPLE_PROMPT.read_text(encoding="utf-8")
    def last_block_end(text: str) -> int:
        return [m.start() for m in re.finditer(r"</[A-Z]{1,3}>", text)][-1]
    assert texts["top", "tag"].index("# Northwind") > last_block_end(texts["top", "tag"])
    assert texts["chunk", "tag"].index("# Northwind") < last_block_end(texts["chunk", "tag"])
    assert re.search(r"Relay Hub<[A-Z]{1,3}/>", texts["chunk", "annotate"])
    assert not re.search(r"<[A-Z]{1,3}/>", texts["chunk", "keep"])
    assert len(texts["chunk", "tag"]) < len(texts["chunk", "annotate"])


def test_progress_bar_on_long_input(tmp_path):
    from corpus import write

    corpus, terms = write(tmp_path, size_bytes=8_000_000)
    env = {**os.environ, "AOTCC_PROGRESS": "1"}
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", "compile", str(corpus), "--terms", str(terms),
                        "-o", str(tmp_path / "big.aotc"), "--tokenizer", str(_tiny_tokenizer(tmp_path))],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "%" in r.stderr and "[" in r.stderr, r.stderr[:500]


def _tiny_tokenizer(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([EXAMPLE_PROMPT.read_text(encoding="utf-8")],
                            trainer=trainers.BpeTrainer(vocab_size=1000, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_bench_command_json(cli, tmp_path):
    r = cli("bench", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "--repeat", "2", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [s["stage"] for s in doc["stages"]] == ["read", "segment", "count", "detect", "chunk", "plan", "rewrite", "emit"]
    assert doc["bytes"] == EXAMPLE_PROMPT.stat().st_size and doc["total"]["mb_per_s"] > 0
    from corpus import write  # the generator lives in benches/, not in the package

    prompt, terms = write(tmp_path / "corpus", size_bytes=500_000, n_terms=200)
    r = cli("bench", prompt, "-t", terms, "--repeat", "1")
    assert r.code == 0 and "detect+plan+rewrite" in r.out
    r = cli("bench", EXAMPLE_PROMPT, "-t", EXAMPLE_TERMS, "--repeat", "0")
    assert r.code == 2 and "--repeat" in r.err


def test_installed_script_in_fresh_process(tmp_path):
    exe = Path(sys.executable).with_name("aotcc")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "compile" in r.stdout and "inspect" in r.stdout
    r = subprocess.run([str(exe), "inspect", str(tmp_path / "missing.aotc")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("aotcc: error:") and "missing.aotc" in r.stderr
    assert (ROOT / "README.md").read_text().count("make demo") >= 1


@pytest.mark.parametrize("flags", [
    {},
    {"budget": 200, "references": "annotate", "tag_ids": "cheap"},
    {"placement": "top", "references": "keep", "tokenizer": "gguf"},
])
def test_cli_and_api_give_identical_artifacts(cli, tmp_path, flags):
    """The same input and options through `aotcc compile` and `aotcc.compile` give the
    same bytes (one options path, one tokenizer fingerprint default)."""
    import aotcc
    from aotcc.models import default_model

    kw = dict(flags)
    if kw.get("tokenizer") == "gguf":
        kw["tokenizer"] = str(default_model())
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    out = tmp_path / "cli.aotc"
    r = cli("compile", EXAMPLE_PROMPT, "-t", EXAMPLE_TERMS, "-o", out, "-q", *argv)
    assert r.code == 0, r.err
    api = aotcc.compile(EXAMPLE_PROMPT, str(EXAMPLE_TERMS), **kw)
    assert out.read_bytes() == api.to_bytes()
    assert aotcc.load(out).hash == api.hash
