"""Issue 14, the core's side: crafted `.aotc` files whose body hash is valid, panics
that must reach the user as one line, and the CLI's last line of defence.

Anything that crashed the process on the old code runs in a subprocess, so a
regression fails its test instead of killing the session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from aotcc import _core
from aotcc.errors import AotccError, ArtifactError, InternalError
from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

Body = dict[str, Any]


# --- crafting: one field changed, the body hash recomputed --------------------------


def craft(data: bytes, edit: Callable[[Body], None]) -> bytes:
    """Re-serialises a valid artifact with `edit` applied to its body and a valid hash."""
    layout = msgpack.unpackb(data, raw=False)
    body = msgpack.unpackb(layout["body"], raw=False)
    edit(body)
    new = msgpack.packb(body, use_bin_type=True)
    layout["body"] = new
    layout["hash"] = _core.blake3_hex(new)
    return msgpack.packb(layout, use_bin_type=True)


WIDTH = {"tokens": 4, "out_tokens": 4, "term": 4, "chunk": 4, "kind": 1}


def _column(body: Body, table: str, col: str) -> list[Any]:
    for pair in body[table]:
        if pair[0] == col:
            return pair  # type: ignore[no-any-return]
    raise KeyError(f"{table}.{col}")


def cell_count(body: Body, table: str, col: str) -> int:
    return len(_column(body, table, col)[1]) // WIDTH.get(col, 8)


def set_cell(body: Body, table: str, col: str, row: int, value: int) -> None:
    pair = _column(body, table, col)
    w = WIDTH.get(col, 8)
    raw = bytearray(pair[1])
    raw[row * w : row * w + w] = (value % (1 << (8 * w))).to_bytes(w, "little")
    pair[1] = bytes(raw)


@pytest.fixture(scope="module")
def artifact_bytes(tmp_path_factory) -> bytes:
    """The shipped example compiled, as `make demo` does."""
    from aotcc.cli import main

    out = tmp_path_factory.mktemp("art") / "x.aotc"
    assert main(["compile", str(EXAMPLE_PROMPT), "-t", str(EXAMPLE_TERMS), "-o", str(out), "-q"]) == 0
    return out.read_bytes()


def body_of(data: bytes) -> Body:
    return msgpack.unpackb(msgpack.unpackb(data, raw=False)["body"], raw=False)  # type: ignore[no-any-return]


def use_everything(a: _core.Artifact) -> None:
    a.source()
    a.chunks()
    a.source_map()
    a.occurrences()
    a.terms()
    a.manifest()
    a.timings()
    a.compiled_byte_offset(3)


def _split_originals(b: Body) -> None:
    n = len(b["originals"].encode())
    b["originals"] = "é" * (n // 2) + "x" * (n % 2)


CRAFTED: dict[str, tuple[Callable[[Body], None], str]] = {
    # aborted the process: memory allocation of 4611686018427387904 bytes failed
    "source_len_2_62": (lambda b: b.__setitem__("source_len", 1 << 62), "source_len says 4611686018427387904"),
    # panicked: capacity overflow
    "source_len_max": (lambda b: b.__setitem__("source_len", (1 << 64) - 1), "source_len says 18446744073709551615"),
    # panicked at rust/py/mod.rs: sources are UTF-8 (a 245 KB message)
    "originals_split_utf8": (_split_originals, "inside a character of originals"),
    "source_map_src_end": (
        lambda b: set_cell(b, "source_map", "src_end", cell_count(b, "source_map", "src_end") - 1, 1 << 40),
        "src_end 1099511627776 is past the",
    ),
    "source_map_kind": (lambda b: set_cell(b, "source_map", "kind", 0, 9), "source_map row 0: kind 9"),
    "occurrence_term": (lambda b: set_cell(b, "occurrences", "term", 0, 10_000), "occurrences row 0: term 10000"),
    "occurrence_chunk": (lambda b: set_cell(b, "occurrences", "chunk", 0, 10_000), "occurrences row 0: start"),
    "chunk_src_end": (lambda b: set_cell(b, "chunks", "src_end", 0, (1 << 64) - 1), "chunks row 0: end 18446744073709551615"),
    "term_definition_span": (
        lambda b: b["terms"][0].__setitem__("definition_span", [0, 1 << 50]),
        "definition_span: end 1125899906842624 is past",
    ),
    "file_end": (lambda b: b["files"][0].__setitem__("end", 1 << 63), "end 9223372036854775808 is past"),
    "placement": (lambda b: b["options"].__setitem__("placement", "x" * 100_000), "options.placement"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_artifact_is_refused_in_one_line(artifact_bytes, tmp_path, case):
    edit, want = CRAFTED[case]
    path = tmp_path / "x.aotc"
    path.write_bytes(craft(artifact_bytes, edit))
    for command in (["inspect", str(path)], ["decompile", str(path), "-o", str(tmp_path / "out.md")]):
        r = subprocess.run([sys.executable, "-m", "aotcc.cli", *command], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (case, r.returncode, r.stderr[-2000:])
        assert r.stderr.startswith(f"aotcc: error: {path}: "), r.stderr[:500]
        assert r.stderr.count("\n") == 1 and len(r.stderr) < 400, r.stderr[:500]
        assert want in r.stderr, (want, r.stderr)
        assert not (tmp_path / "out.md").exists()


def test_every_table_cell_at_its_edges_is_refused_or_read(artifact_bytes):
    """Every cell of every table set to values around the edges: an ArtifactError, or an
    artifact whose every accessor works; never a panic."""
    body = body_of(artifact_bytes)
    text_len, src_len = len(body["text"].encode()), body["source_len"]
    values = [0, 1, src_len - 1, src_len + 1, text_len, text_len + 1, (1 << 32) - 1, 1 << 62, (1 << 64) - 1]
    tables = {
        "chunks": ["src_start", "src_end", "out_start", "out_end", "tokens", "out_tokens"],
        "source_map": ["out_start", "out_end", "src_start", "src_end", "kind", "term"],
        "occurrences": ["start", "end", "term", "chunk"],
    }
    refused = accepted = 0
    for table, cols in tables.items():
        for col in cols:
            n = cell_count(body, table, col)
            for row in sorted({0, 1, n // 2, n - 1}):
                for v in values:
                    data = craft(artifact_bytes, lambda b: set_cell(b, table, col, row, v))  # noqa: B023
                    try:
                        a = _core.Artifact.from_bytes(data, "x.aotc")
                    except ArtifactError as e:
                        assert str(e).startswith("x.aotc: ") and "\n" not in str(e) and len(str(e)) < 400, str(e)
                        refused += 1
                        continue
                    use_everything(a)
                    accepted += 1
    assert refused > 200


def test_valid_artifact_still_loads(artifact_bytes):
    a = _core.Artifact.from_bytes(craft(artifact_bytes, lambda b: None))
    use_everything(a)
    assert a.source() == EXAMPLE_PROMPT.read_bytes()


# --- panics: one line, an AotccError, never a PanicException -------------------------


@pytest.mark.parametrize("in_worker", [False, True])
def test_a_panic_is_an_internal_error_in_one_line(capfd, in_worker):
    with pytest.raises(InternalError) as info:
        _core._test_panic("boom " + "x" * 300_000 + "\nsecond line", in_worker)
    msg = str(info.value)
    assert isinstance(info.value, AotccError)
    assert msg.startswith("internal error: boom xxx") and "\n" not in msg and len(msg) < 500, msg[:600]
    assert "rust/py/mod.rs" in msg
    # the default panic hook would print the whole 300 KB message to stderr
    assert len(capfd.readouterr().err) < 1000


def test_cli_reports_a_core_panic_in_one_line(cli, monkeypatch):
    import aotcc.cli.compile_cmds as cmds

    monkeypatch.setattr(cmds, "cmd_inspect", lambda args: _core._test_panic("y" * 100_000, False))
    r = cli("inspect", "whatever.aotc")
    assert r.code == 2
    assert r.err.startswith("aotcc: internal error: yyy"), r.err[:300]
    assert r.err.count("\n") == 1 and len(r.err) < 500


class PanicException(BaseException):
    """Stands in for pyo3's PanicException from another extension (a BaseException)."""


@pytest.mark.parametrize("exc", [PanicException("z" * 100_000 + "\nmore"), GeneratorExit("odd")])
def test_cli_reports_any_base_exception_in_one_line(cli, monkeypatch, exc):
    import aotcc.cli.compile_cmds as cmds

    def boom(args: object) -> int:
        raise exc

    monkeypatch.setattr(cmds, "cmd_inspect", boom)
    r = cli("inspect", "whatever.aotc")
    assert r.code == 2
    assert r.err.startswith(f"aotcc: internal error: {type(exc).__name__}: "), r.err[:300]
    assert r.err.count("\n") == 1 and len(r.err) < 500


def test_cli_keeps_interrupt_and_exit(cli, monkeypatch):
    import aotcc.cli.compile_cmds as cmds

    def interrupt(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cmds, "cmd_inspect", interrupt)
    assert cli("inspect", "x").code == 130

    def leave(args: object) -> int:
        raise SystemExit(7)

    monkeypatch.setattr(cmds, "cmd_inspect", leave)
    with pytest.raises(SystemExit):
        cli("inspect", "x")


def test_segment_takes_file_starts_in_any_order():
    text = "héllo wörld\n\nnext file"
    assert list(_core.segment(text, [13, 0, 6, 6])["start"]) == list(_core.segment(text, [0, 6, 13])["start"])
    with pytest.raises(_core.InputError, match="file start 99 is past the end of the text"):
        _core.segment(text, [99, 0])


# --- GGUF metadata: nesting and counts bounded by the file ---------------------------


def _nested_gguf(levels: int) -> bytes:
    """One key whose value is `levels` arrays, each holding the next."""
    key = b"tokenizer.ggml.tokens"
    head = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
    head += len(key).to_bytes(8, "little") + key + (9).to_bytes(4, "little")
    level = (9).to_bytes(4, "little") + (1).to_bytes(8, "little")
    return head + level * levels + (8).to_bytes(4, "little") + (0).to_bytes(8, "little")


def test_deeply_nested_gguf_is_refused_in_one_line(tmp_path):
    # 600 KB of nested arrays segfaulted `compile --tokenizer` (unbounded recursion).
    path = tmp_path / "nested.gguf"
    path.write_bytes(_nested_gguf(50_000))
    out = tmp_path / "out.aotc"
    args = ["compile", str(EXAMPLE_PROMPT), "-t", str(EXAMPLE_TERMS), "--tokenizer", str(path), "-o", str(out)]
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith("aotcc: error: ") and r.stderr.count("\n") == 1, r.stderr[:500]
    assert f"{path}: corrupt GGUF metadata at byte " in r.stderr and "nested more than" in r.stderr, r.stderr
    assert not out.exists()


def test_gguf_counts_past_the_file_are_refused(tmp_path):
    from aotcc.errors import InputError

    path = tmp_path / "count.gguf"
    # 2^24 keys announced in a 24-byte file
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1 << 24).to_bytes(8, "little"))
    with pytest.raises(InputError, match=r"count\.gguf: corrupt GGUF metadata at byte 16: key/value count 16777216"):
        _core.GgufTokenizer(str(path))


# --- nested aliases: detection memory linear in the text ----------------------------

_NESTED_ALIASES = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from aotcc import _core
spec = {"terms": [{"name": " ".join(["aa"] * k), "definition": f"d{k}"} for k in range(1, 301)]}
text = "aa " * 2_000_000
compiler = _core.Compiler(json.dumps(spec))
found = compiler.detect(text)
artifact = compiler.compile([("nested.md", text.encode())])
assert artifact.source() == text.encode()
print(len(found["start"]), len(artifact.text))
"""


def test_nested_aliases_detect_under_a_memory_limit():
    # 300 terms `aa`, `aa aa`, ... over 6 MB of `aa aa ...` reached 23.7 GB.
    env = dict(os.environ, RAYON_NUM_THREADS="2", MALLOC_ARENA_MAX="2")
    r = subprocess.run(
        [sys.executable, "-c", _NESTED_ALIASES, str(512 << 20)], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    occurrences, _ = r.stdout.split()
    assert int(occurrences) == 2_000_000 // 300 + 1
