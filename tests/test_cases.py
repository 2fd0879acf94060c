"""Table-driven compile cases shared with `cargo test` (tests/data/cases/*.toml).

Each file holds one case: `[case]` with a description, the source, optional
`budget`/`placement`/`references` and the expectations (`expect_compiled`,
`expect_occurrences` in character offsets, or `expect_error` plus
`expect_error_kind`), and a `[spec]` table in the term-spec shape. The expected texts
were derived by hand from docs/semantics.md; every case is also run through the
Python reference (tests/reference.py), so a case and the oracle keep each other honest.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import reference
from aotcc import _core as core

CASES_DIR = Path(__file__).parent / "data" / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.toml"))
ERROR_KINDS = {"SpecError", "PlanError", "InputError"}


def load_case(path: Path) -> tuple[dict, dict]:
    with path.open("rb") as f:
        data = tomllib.load(f)
    case = data["case"]
    raw_spec = data.get("spec", {})
    spec = {"options": raw_spec.get("options", {}), "terms": raw_spec.get("term", [])}
    return case, spec


def compile_case(case: dict, spec: dict, name: str):
    compiler = core.Compiler(
        json.dumps(spec),
        name,
        budget=case.get("budget", 512),
        placement=case.get("placement", "chunk"),
        references=case.get("references", "tag"),
        tag_style=case.get("tag_style", "seed"),
    )
    return compiler.compile([("case", case["source"].encode("utf-8"))])


def test_there_are_enough_cases():
    assert len(CASE_FILES) >= 20


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case_file_is_well_formed(path: Path):
    case, spec = load_case(path)
    assert case.get("description"), "a case needs a description"
    assert isinstance(case.get("source"), str)
    expectations = {"expect_compiled", "expect_occurrences", "expect_error"} & case.keys()
    assert expectations, "a case needs at least one expectation"
    if "expect_error" in case:
        assert case.get("expect_error_kind") in ERROR_KINDS
        assert not {"expect_compiled", "expect_occurrences"} & case.keys()
    assert case.get("placement", "chunk") in ("chunk", "top")
    assert case.get("references", "tag") in ("tag", "annotate", "keep")
    assert case.get("tag_style", "seed") in ("seed", "short")


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case(path: Path):
    case, spec = load_case(path)
    source = case["source"]

    if "expect_error" in case:
        error_class = getattr(core, case["expect_error_kind"])
        with pytest.raises(core.AotccError) as caught:
            compile_case(case, spec, path.name)
        assert isinstance(caught.value, error_class), (
            f"expected {case['expect_error_kind']}, got {type(caught.value).__name__}: "
            f"{caught.value}"
        )
        assert case["expect_error"] in str(caught.value)
        return

    artifact = compile_case(case, spec, path.name)
    names = [term["name"] for term in spec["terms"]]

    if "expect_compiled" in case:
        assert artifact.text == case["expect_compiled"]

    if "expect_occurrences" in case:
        occurrences = artifact.occurrences()
        got = [
            [int(s), int(e), names[int(t)]]
            for s, e, t in zip(occurrences["start"], occurrences["end"], occurrences["term"])
        ]
        assert got == [list(row) for row in case["expect_occurrences"]]

    if "expect_warnings" in case:
        assert artifact.manifest()["warnings"] == case["expect_warnings"]

    assert artifact.source() == source.encode("utf-8")


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case_agrees_with_reference(path: Path):
    """The hand-derived expectations hold for the reference too (chunks taken from the
    core's artifact, since chunking is not part of the reference)."""
    case, spec = load_case(path)
    source = case["source"]
    placement = case.get("placement", "chunk")
    references = case.get("references", "tag")
    style = case.get("tag_style", "seed")

    if "expect_error" in case:
        reference_error = {
            "SpecError": reference.ReferenceSpecError,
            "PlanError": reference.ReferencePlanError,
        }.get(case["expect_error_kind"])
        if reference_error is None:  # input errors are outside the reference
            return
        with pytest.raises(reference_error) as caught:
            reference.compile_reference(source, spec, [(0, len(source))], placement, references, tag_style=style)
        assert case["expect_error"] in str(caught.value)
        return

    chunks_table = compile_case(case, spec, path.name).chunks()
    chunks = list(zip(chunks_table["src_start"].tolist(), chunks_table["src_end"].tolist()))
    result = reference.compile_reference(source, spec, chunks, placement, references, tag_style=style)
    if "expect_compiled" in case:
        assert result.compiled == case["expect_compiled"]
    if "expect_occurrences" in case:
        names = [term["name"] for term in spec["terms"]]
        got = [[s, e, names[t]] for s, e, t in result.occurrences]
        assert got == [list(row) for row in case["expect_occurrences"]]
