"""Bad input gets a specific error naming the file, term or byte offset, exit code 2,
and no output file (a file already there is left untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

GOOD_SPEC = """
[[term]]
name = "Refund Policy"
aliases = ["RP-7"]
definition = "Refunds within 30 days."
"""


def compile_case(cli, tmp_path: Path, prompt: bytes, spec: bytes | str, spec_name: str = "terms.toml", out: str | None = None):
    p = tmp_path / "prompt.md"
    p.write_bytes(prompt)
    s = tmp_path / spec_name
    s.write_bytes(spec.encode() if isinstance(spec, str) else spec)
    o = Path(out) if out else tmp_path / "out.aotc"
    if out is None:
        o.write_bytes(b"previous artifact")  # must survive a failed compile
    r = cli("compile", p, "--terms", s, "-o", o)
    return r, o


def assert_refused(r, o: Path, *needles: str) -> None:
    assert r.code == 2, (r.code, r.err)
    assert r.err.startswith("aotcc: error: "), r.err
    assert r.err.count("\n") == 1, f"one line expected: {r.err!r}"
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, (n, r.err)
    if o.exists():
        assert o.read_bytes() == b"previous artifact"
    if o.parent.is_dir():
        assert not [f for f in o.parent.iterdir() if f.name.endswith(".tmp")], "temp file left behind"


def test_invalid_utf8_in_prompt(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"Hello\nthe Refund Policy \xff\xfe here", GOOD_SPEC)
    assert_refused(r, o, "prompt.md", "invalid UTF-8 at byte 24", "line 2")


def test_invalid_utf8_in_spec(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", GOOD_SPEC.encode() + b"\n# \xc3\x28\n")
    assert_refused(r, o, "terms.toml", "invalid UTF-8 at byte")


def test_malformed_toml(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", "[[term]]\nname = \"X\"\ndefinition = \n")
    assert_refused(r, o, "terms.toml", "malformed TOML", "line 3")


def test_malformed_json(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", '[{"name": "X", "definition": "d",}]', "terms.json")
    assert_refused(r, o, "terms.json", "malformed JSON", "line 1")


def test_term_without_name(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", GOOD_SPEC + '[[term]]\ndefinition = "d"\n')
    assert_refused(r, o, "terms.toml", 'term #2: missing "name"')


def test_term_without_definition(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", GOOD_SPEC + '[[term]]\nname = "Supervisor"\n')
    assert_refused(r, o, 'term "Supervisor": missing "definition"')


def test_duplicate_term_names(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", GOOD_SPEC + GOOD_SPEC.replace('aliases = ["RP-7"]', ""))
    assert_refused(r, o, 'duplicate term name "Refund Policy"', "#1", "#2")


def test_alias_claimed_by_two_terms(cli, tmp_path):
    spec = GOOD_SPEC + '[[term]]\nname = "Return Process"\naliases = ["rp-7"]\ndefinition = "d"\n'
    r, o = compile_case(cli, tmp_path, b"text", spec)
    assert_refused(r, o, "claimed by two terms", '"Refund Policy"', '"Return Process"', "RP-7")


def test_empty_alias(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"text", GOOD_SPEC.replace('["RP-7"]', '["RP-7", ""]'))
    assert_refused(r, o, 'term "Refund Policy": alias #2 is empty')


def test_requires_unknown_term(cli, tmp_path):
    spec = GOOD_SPEC + 'requires = ["Supervisor Approval"]\n'
    r, o = compile_case(cli, tmp_path, b"text", spec)
    assert_refused(r, o, 'term "Refund Policy": requires unknown term "Supervisor Approval"')


def test_dependency_cycle_is_printed(cli, tmp_path):
    spec = """
[[term]]
name = "A"
definition = "a"
requires = ["B"]
[[term]]
name = "B"
definition = "b"
requires = ["C"]
[[term]]
name = "C"
definition = "c"
requires = ["A"]
"""
    r, o = compile_case(cli, tmp_path, b"A B C", spec)
    assert_refused(r, o, "requires cycle: A -> B -> C -> A")


def test_output_in_missing_directory(cli, tmp_path):
    r, o = compile_case(cli, tmp_path, b"the Refund Policy", GOOD_SPEC, out=str(tmp_path / "nope" / "out.aotc"))
    assert_refused(r, o, "does not exist", "nope")
    assert not (tmp_path / "nope").exists()


def test_missing_prompt_file(cli, tmp_path):
    s = tmp_path / "terms.toml"
    s.write_text(GOOD_SPEC)
    r = cli("compile", tmp_path / "missing.md", "--terms", s, "-o", tmp_path / "o.aotc")
    assert_refused(r, tmp_path / "o.aotc", "missing.md: no such file")


def test_bad_budget(cli, tmp_path):
    s = tmp_path / "terms.toml"
    s.write_text(GOOD_SPEC)
    r = cli("compile", EXAMPLE_PROMPT, "--terms", s, "--budget", "0", "-o", tmp_path / "o.aotc")
    assert_refused(r, tmp_path / "o.aotc", "budget")


def test_usage_error_is_exit_2(cli):
    r = cli("compile", "--budget", "x")
    assert r.code == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_artifact_is_refused(cli, tmp_path, damage):
    out = tmp_path / "ok.aotc"
    assert cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out, "-q").code == 0
    data = bytearray(out.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x20
    else:
        data = bytearray(b"this is not an artifact at all")
    out.write_bytes(bytes(data))
    r = cli("inspect", out)
    assert r.code == 2
    assert str(out) in r.err
    assert {"truncate": "truncated", "flip": "corrupt", "garbage": "not an aotcc artifact"}[damage] in r.err
