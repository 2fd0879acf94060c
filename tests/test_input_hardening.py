"""Bad specs, bad numbers, forged export documents and hostile names get one-line errors
(exit 2), never a traceback, never unbounded work (issue 14, classes 7, 8, 9, 10 and 11)."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

SPEC = '[[term]]\nname = "Refund Policy"\naliases = ["RP-7"]\ndefinition = "Refunds within 30 days."\n'


def one_line(err: str, prefix: str = "aotcc: error: ") -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    return lines[0]


@pytest.fixture
def prompt(tmp_path) -> Path:
    p = tmp_path / "prompt.md"
    p.write_text("The Refund Policy applies. See RP-7.\n")
    return p


def refused(cli, tmp_path, prompt, spec_name: str, spec: str | bytes, *needles: str) -> str:
    s = tmp_path / spec_name
    s.write_bytes(spec if isinstance(spec, bytes) else spec.encode())
    out = tmp_path / "out.aotc"
    r = cli("compile", prompt, "--terms", s, "-o", out)
    assert r.code == 2, r.err
    msg = one_line(r.err)
    for n in needles:
        assert n in msg, (n, msg)
    assert not out.exists()
    return msg


# --- class 7: spec loading -----------------------------------------------------------------------


@pytest.mark.parametrize("name,text", [
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deep.toml", "x = " + "[" * 100_000 + "]" * 100_000),
    ("deep-inline.toml", "x = " + "{a = " * 3000 + "1" + "}" * 3000),
    ("deep-keys.toml", "[" + ".".join(["a"] * 3000) + "]\nb = 1\n"),
    ("deep-terms.json", '{"terms": [{"name": "A", "definition": "d", "x": ' + "[" * 200 + "]" * 200 + "}]}"),
])
def test_deep_nesting(cli, tmp_path, prompt, name, text):
    refused(cli, tmp_path, prompt, name, text, name, "nested more than 64 levels deep")


@pytest.mark.parametrize("value", ["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27T07:32:00"])
@pytest.mark.parametrize("field", ["definition", "name", "aliases", "id"])
def test_toml_dates_and_times_in_any_field(cli, tmp_path, prompt, field, value):
    body = {"name": '"Refund Policy"', "definition": '"d"'}
    body[field] = f"[{value}]" if field == "aliases" else value
    spec = "[[term]]\n" + "".join(f"{k} = {v}\n" for k, v in body.items())
    refused(cli, tmp_path, prompt, "terms.toml", spec, "terms.toml", f"term[0].{field}", "date or time", "quoted string")


def test_toml_date_in_options(cli, tmp_path, prompt):
    refused(cli, tmp_path, prompt, "terms.toml", "[options]\nid_prefix = 2024-01-01\n" + SPEC, "options.id_prefix", "date or time")


@pytest.mark.parametrize("name,spec,where", [
    ("terms.toml", SPEC + "id = nan\n", "term[0].id"),
    ("terms.toml", SPEC + "x = -inf\n", "term[0].x"),
    ("terms.toml", "[options]\ncase_sensitive = inf\n" + SPEC, "options.case_sensitive"),
    ("terms.json", '[{"name": "Refund Policy", "definition": "d", "id": NaN}]', "[0].id"),
    ("terms.json", '[{"name": "Refund Policy", "definition": "d", "id": 1e999}]', "[0].id"),
])
def test_nan_and_infinity(cli, tmp_path, prompt, name, spec, where):
    msg = refused(cli, tmp_path, prompt, name, spec, name, where, "only finite numbers")
    assert "not valid JSON" not in msg


def test_terms_list_and_term_tables_together(cli, tmp_path, prompt):
    spec = 'terms = [{name = "Supervisor", definition = "s"}]\n' + SPEC
    refused(cli, tmp_path, prompt, "terms.toml", spec, "terms.toml", "both `terms` and `[[term]]`")


def test_prompt_and_spec_both_from_stdin(cli, tmp_path):
    r = cli("compile", "-", "--terms", "-", "-o", tmp_path / "o.aotc", stdin=SPEC.encode())
    assert r.code == 2 and "stdin (-) can be read only once" in one_line(r.err)
    assert not (tmp_path / "o.aotc").exists()


def test_stdin_is_read_once_by_the_api(tmp_path):
    import io
    import sys

    from aotcc._io import read_input
    from aotcc.errors import InputError

    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(b"text"))
    try:
        assert read_input("-") == b"text"
        with pytest.raises(InputError, match="already read"):
            read_input("-")
    finally:
        sys.stdin = old


def test_dev_zero_as_spec_is_bounded(cli, tmp_path, prompt):
    t = time.perf_counter()
    r = cli("compile", prompt, "--terms", "/dev/zero", "-o", tmp_path / "o.aotc")
    assert r.code == 2
    msg = one_line(r.err)
    assert "/dev/zero" in msg and "64 MiB" in msg
    assert time.perf_counter() - t < 30


def test_huge_regular_spec_is_refused_before_reading(cli, tmp_path, prompt):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate((64 << 20) + 1)  # sparse: its size is checked, its bytes are never read
    r = cli("compile", prompt, "--terms", big, "-o", tmp_path / "o.aotc")
    msg = one_line(r.err)
    assert r.code == 2 and "67,108,865 bytes" in msg and "64 MiB" in msg


def test_spec_from_a_fifo_still_works(cli, tmp_path, prompt):
    fifo = tmp_path / "terms.toml"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "w") as f:
            f.write(SPEC)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    r = cli("compile", prompt, "--terms", fifo, "-o", tmp_path / "o.aotc", "-q")
    th.join(10)
    assert r.code == 0, r.err


def test_api_spec_objects_are_checked_too():
    import aotcc
    from aotcc.errors import SpecError

    with pytest.raises(SpecError, match="only finite numbers"):
        aotcc.compile("The Refund Policy.", [{"name": "Refund Policy", "definition": float("nan")}])
    deep: list = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(SpecError, match="nested more than"):
        aotcc.compile("x", {"terms": [{"name": "A", "definition": "d", "x": deep}]})


# --- class 8: numbers on the command line ----------------------------------------------------------

NUMBERS = [
    ("compile", "P", "-t", "T", "-o", "O", "--budget", "1e23"),
    ("compile", "P", "-t", "T", "-o", "O", "--budget", "99999999999999999999999"),
    ("compile", "P", "-t", "T", "-o", "O", "--budget", "0"),
    ("bench", "P", "-t", "T", "--repeat", "-1"),
    ("bench", "P", "-t", "T", "--repeat", "nan"),
    ("bench", "P", "-t", "T", "--budget", "inf"),
    ("prefill", "A", "-o", "O", "--zstd-level", "1000"),
    ("prefill", "A", "-o", "O", "--zstd-level", "0"),
    ("prefill", "A", "-o", "O", "--threads", "100000"),
    ("prefill", "A", "-o", "O", "--ctx", "2000000000"),
    ("prefill", "A", "-o", "O", "--ctx", "-5"),
    ("prefill", "A", "-o", "O", "--batch", "1000000000"),
    ("run", "B", "-p", "q", "--max-tokens", "-1"),
    ("run", "B", "-p", "q", "--temperature", "nan"),
    ("run", "B", "-p", "q", "--temperature", "inf"),
    ("run", "B", "-p", "q", "--seed", "-3"),
    ("run", "B", "-p", "q", "--threads", "0"),
    ("verify", "B", "--ctx", "1e9"),
    ("analyze", "P", "-t", "T", "--top-k", "-2"),
    ("analyze", "P", "-t", "T", "--threshold", "nan"),
    ("analyze", "P", "-t", "T", "--threshold", "inf"),
    ("analyze", "P", "-t", "T", "--threads", "100000"),
    ("eval", "S", "--budget", "1e23"),
    ("eval", "S", "--threads", "-1"),
    ("eval", "S", "--score-threads", "100000"),
    ("export", "A", "--target", "anthropic", "--max-tokens", "-1"),
    ("export", "A", "--target", "anthropic", "--breakpoints", "nan"),
    ("export", "A", "--target", "llama-server", "--slot", "-1"),
    ("export", "A", "--target", "openai", "--estimate", "--dynamic-tokens", "1", "--requests-per-day", "0"),
    ("export", "A", "--target", "openai", "--estimate", "--dynamic-tokens", "1", "--requests-per-day", "1e30"),
    ("export", "A", "--target", "openai", "--estimate", "--requests-per-day", "1", "--dynamic-tokens", "-5"),
    ("export", "A", "--target", "openai", "--estimate", "--requests-per-day", "1", "--dynamic-tokens", "1", "--price-input", "inf"),
    ("export", "A", "--target", "openai", "--estimate", "--requests-per-day", "1", "--dynamic-tokens", "1", "--price-output", "nan"),
    ("export", "A", "--target", "openai", "--estimate", "--requests-per-day", "1", "--dynamic-tokens", "1", "--read-multiplier", "-1"),
    ("export", "A", "--target", "gemini", "--estimate", "--requests-per-day", "1", "--dynamic-tokens", "1", "--storage-price", "1e400"),
]


@pytest.mark.parametrize("argv", NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a in NUMBERS])
def test_bad_numbers_are_usage_errors_before_any_work(cli, tmp_path, argv):
    # the files do not exist: the number must be refused first, before anything is read
    args = [str(tmp_path / a) if a in ("P", "T", "O", "A", "B", "S") else a for a in argv]
    r = cli(*args)
    assert r.code == 2
    msg = one_line(r.err)
    flag = argv[-2]
    assert f"argument {flag}" in msg, msg
    assert "no such file" not in msg


@pytest.mark.parametrize("ttl", ["9" * 400 + "s", "99999999999999999999d", "0s", "-5m", "1e9s"])
def test_durations_are_bounded(cli, tmp_path, ttl):
    import aotcc

    art = tmp_path / "a.aotc"
    aotcc.compile("The Refund Policy.", [{"name": "Refund Policy", "definition": "d"}]).save(art)
    r = cli("export", art, "--target", "gemini", "--ttl", ttl)
    assert r.code == 2 and "--ttl" in one_line(r.err)


def test_api_numbers_are_checked():
    from aotcc.errors import InputError
    from aotcc.export import estimate, export_request

    with pytest.raises(InputError, match="--max-tokens -1"):
        export_request("unused.aotc", "anthropic", max_tokens=-1)
    with pytest.raises(InputError, match="--price-input"):
        estimate("openai", static_tokens=10, requests_per_day=1, dynamic_tokens=1, price_input=float("inf"))
    with pytest.raises(InputError, match="--requests-per-day"):
        estimate("openai", static_tokens=10, requests_per_day=float("nan"), dynamic_tokens=1)


def test_threads_from_the_environment_are_bounded(monkeypatch):
    from aotcc.errors import AotccError
    from aotcc.llama import runtime

    monkeypatch.setenv("AOTCC_THREADS", "100000")
    with pytest.raises(AotccError, match="AOTCC_THREADS 100000: expected 1 to"):
        runtime._env_threads()


# --- class 9: export --check documents --------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    import aotcc

    out = tmp_path_factory.mktemp("check") / "ex.aotc"
    aotcc.compile(EXAMPLE_PROMPT, EXAMPLE_TERMS).save(out)
    return out


@pytest.fixture(scope="module")
def documents(artifact) -> dict[str, dict]:
    from aotcc.export import export_request

    return {t: export_request(artifact, t).document for t in ("anthropic", "openai", "gemini", "llama-server")}


def _set(doc: dict, path: list, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is _DEL:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DEL = object()

FORGED = [
    ("anthropic", ["options", "max_tokens"], "x", "options.max_tokens"),
    ("anthropic", ["options", "max_tokens"], -1, "options.max_tokens"),
    ("anthropic", ["options", "breakpoints"], True, "options.breakpoints"),
    ("anthropic", ["options", "ttl"], 5, "options.ttl"),
    ("openai", ["options", "api"], ["chat"], "options.api"),
    ("gemini", ["options", "gemini_as"], "both", "options.gemini_as"),
    ("llama-server", ["options", "slot"], -4, "options.slot"),
    ("anthropic", ["requests", 0, "body", "system"], "text", "requests[0].body.system"),
    ("anthropic", ["requests", 0, "body", "system", 0], "block", "requests[0].body.system[0]"),
    ("anthropic", ["requests", 0, "body", "system", 0, "text"], None, "requests[0].body.system[0].text"),
    ("anthropic", ["cache", "segments"], [], "cache.segments"),
    ("anthropic", ["cache", "segments", 0, "cumulative_tokens"], "many", "cache.segments[0].cumulative_tokens"),
    ("anthropic", ["cache", "chunks", 0, "bytes"], [0], "cache.chunks[0].bytes"),
    ("anthropic", ["cache", "chunks", 0, "index"], 1.5, "cache.chunks[0].index"),
    ("anthropic", ["cache", "chunks"], {"a": 1}, "cache.chunks"),
    ("anthropic", ["artifact", "static_tokens"], "lots", "artifact.static_tokens"),
    ("anthropic", ["requests", 0, "name"], 7, "requests[0].name"),
    ("anthropic", ["requests", 0], [], "requests[0]"),
    ("anthropic", ["requests"], {}, "requests"),
    ("openai", ["requests", 0, "body", "messages"], [], "requests[0].body.messages[0]"),
    ("openai", ["requests", 0, "body", "messages", 0, "content"], [{"type": "text"}], "content"),
    ("gemini", ["requests", 0, "body", "systemInstruction", "parts"], [{"text": 1}], "parts[0].text"),
    ("gemini", ["requests", 0, "body", "systemInstruction"], _DEL, "contents"),
    ("llama-server", ["requests", 0, "body", "prompt"], [1, 2, {"t": 3}], "prompt[2]"),
    ("llama-server", ["requests", 0, "body", "prompt"], 12, "prompt"),
    ("llama-server", ["requests", 0, "body", "prompt"], [True], "prompt[0]"),
    ("anthropic", ["options"], [], "options"),
    ("anthropic", ["target"], ["anthropic"], "target"),
    ("anthropic", ["aotcc_export"], True, "export format True"),
]


@pytest.mark.parametrize("target,path,value,needle", FORGED, ids=[f"{t}:{'.'.join(map(str, p))}" for t, p, _, _ in FORGED])
def test_forged_check_documents_are_refused_with_their_json_path(cli, tmp_path, artifact, documents, target, path, value, needle):
    doc = _set(documents[target], path, value)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    r = cli("export", artifact, "--check", old)
    assert r.code == 2, (r.code, r.out, r.err)
    msg = one_line(r.err)
    assert "old.json" in msg and needle in msg, msg


def test_duplicate_request_names(cli, tmp_path, artifact, documents):
    doc = copy.deepcopy(documents["gemini"])
    doc["requests"].append(copy.deepcopy(doc["requests"][0]))
    old = tmp_path / "dup.json"
    old.write_text(json.dumps(doc))
    r = cli("export", artifact, "--check", old)
    assert r.code == 2 and "a second request named" in one_line(r.err)


def test_check_document_nesting_and_size(cli, tmp_path, artifact):
    deep = tmp_path / "deep.json"
    deep.write_text('{"aotcc_export": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    r = cli("export", artifact, "--check", deep)
    assert r.code == 2 and "nested more than 64 levels" in one_line(r.err)
    r = cli("export", artifact, "--check", "/dev/zero")
    assert r.code == 2 and "64 MiB" in one_line(r.err)


def test_valid_documents_still_check(cli, tmp_path, artifact, documents):
    for target, doc in documents.items():
        old = tmp_path / f"{target}.json"
        old.write_text(json.dumps(doc))
        r = cli("export", artifact, "--check", old)
        assert r.code == 0, (target, r.err)


# --- class 10: inspect at scale --------------------------------------------------------------------


def test_inspect_is_linear_in_the_number_of_terms(cli, tmp_path):
    n = 30_000  # half of them pulled in by another: the old per-term scan did n^2/2 tuple lookups (~40 s)
    terms = [{"name": f"Term{i:05d}x", "definition": f"definition {i}"} | ({"requires": [f"Term{i + 1:05d}x"]} if i % 2 == 0 else {})
             for i in range(n)]
    spec = tmp_path / "terms.json"
    spec.write_text(json.dumps({"terms": terms}))
    p = tmp_path / "p.md"
    p.write_text("\n\n".join(f"About Term{i:05d}x here." for i in range(0, n, 2)) + "\n")
    out = tmp_path / "big.aotc"
    assert cli("compile", p, "--terms", spec, "-o", out, "-q").code == 0
    t = time.perf_counter()
    r = cli("inspect", out)
    took = time.perf_counter() - t
    assert r.code == 0
    assert r.out.count("pulled in by Term") == n // 2
    assert took < 15, f"inspect took {took:.1f} s for {n} terms"


# --- class 11: messages ------------------------------------------------------------------------------


def test_control_characters_in_file_names_are_escaped(cli, tmp_path):
    bad = tmp_path / "evil\x1b[31mred\nline\x07.md"
    r = cli("compile", bad, "--terms", EXAMPLE_TERMS, "-o", tmp_path / "o.aotc")
    assert r.code == 2
    msg = one_line(r.err)
    assert "\x1b" not in r.err and "\x07" not in r.err
    assert "evil\\x1b[31mred\\x0aline\\x07.md: no such file" in msg
    undecodable = os.fsdecode(b"bad\xff.toml")
    r = cli("compile", EXAMPLE_PROMPT, "--terms", tmp_path / undecodable, "-o", tmp_path / "o.aotc")
    assert r.code == 2 and "bad\\xff.toml" in one_line(r.err)


def test_control_characters_in_status_lines_are_escaped(cli, tmp_path):
    out = tmp_path / "out\x1b[2J.aotc"
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out)
    assert r.code == 0 and out.exists()
    assert "\x1b" not in r.err and "out\\x1b[2J.aotc" in r.err
    r = cli("inspect", out)
    assert r.code == 0 and "\x1b" not in r.out


def test_control_characters_in_usage_errors_are_escaped(cli):
    r = cli("compile", "x", "-t", "y", "-o", "z", "--placement", "\x1b]0;title\x07")
    assert r.code == 2 and "\x1b" not in r.err and "\\x1b" in one_line(r.err)


def test_a_long_requires_cycle_is_one_short_line(cli, tmp_path):
    n = 50_000
    spec = tmp_path / "cycle.json"
    spec.write_text(json.dumps([{"name": f"C{i}", "definition": "d", "requires": [f"C{(i + 1) % n}"]} for i in range(n)]))
    p = tmp_path / "p.md"
    p.write_text("C0\n")
    r = cli("compile", p, "--terms", spec, "-o", tmp_path / "o.aotc")
    assert r.code == 2
    msg = one_line(r.err)
    assert len(msg) < 300, len(msg)
    assert msg.endswith("requires cycle: C0 -> C1 -> C2 -> C3 -> … 49993 more … -> C49997 -> C49998 -> C49999 -> C0 (50000 terms)")


def test_empty_query_is_refused_up_front(cli, tmp_path, monkeypatch):
    from aotcc.llama import runtime

    monkeypatch.setattr(runtime, "Runtime", lambda *a, **k: pytest.fail("no runtime for an empty query"))
    b = tmp_path / "b.aotkv"
    b.write_bytes(b"not even read")
    for args in (("--prompt", ""), ("--prompt", "-")):
        r = cli("run", b, *args, stdin=b"")
        assert r.code == 2 and "the query is empty" in one_line(r.err)


def test_unknown_template_names_the_option_not_the_model(cli, tmp_path):
    art = tmp_path / "a.aotc"
    art.write_bytes(b"unused")
    r = cli("prefill", art, "-o", tmp_path / "b.aotkv", "--chat-template", "--template", "no-such-template")
    assert r.code == 2
    msg = one_line(r.err)
    assert "--template 'no-such-template': not one of llama.cpp's built-in chat templates" in msg and "chatml" in msg
    assert "model" not in msg.split("(")[0]


def test_analyze_reports_invalid_utf8_before_loading_a_model(cli, tmp_path, monkeypatch):
    from aotcc.analyze import engine

    def no_model(*a, **k):
        raise AssertionError("the model was loaded for input that is not UTF-8")

    monkeypatch.setattr(engine.Engine, "__init__", no_model)
    binary = tmp_path / "blob.md"
    binary.write_bytes(b"ok text\n\x00\xff\xfe\x80 binary")
    for argv in (("analyze", binary, "--terms", EXAMPLE_TERMS, "-o", tmp_path / "o.aotc"),
                 ("compile", binary, "--analyze", "--terms", EXAMPLE_TERMS, "-o", tmp_path / "o.aotc")):
        r = cli(*argv)
        assert r.code == 2
        assert "blob.md: invalid UTF-8 at byte 9 (line 2)" in one_line(r.err)
