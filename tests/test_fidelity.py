"""The measured fidelity of bundle settings (python/aotcc/llama/fidelity.toml, written by
scripts/measure_fidelity.py): the table covers what docs/bundles.md promises, `prefill`
warns for a setting below the safe line and only then, and `info` says what was
measured for a bundle's setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aotcc.llama import fidelity
from conftest import EXAMPLE_TERMS, ROOT

SETTINGS = {("exact", "f16"), ("compact", "f16"), ("compact", "q8_0"), ("compact", "q4_0")}


def test_the_table_covers_both_models_and_every_setting() -> None:
    rows = fidelity.table()
    for arch in ("gemma3", "llama"):  # Gemma 3 270M (sliding window), SmolLM2-135M (llama, none)
        mine = [r for r in rows if r["arch"] == arch]
        assert {(r["mode"], r["kv"]) for r in mine} >= (SETTINGS if arch == "gemma3" else {("exact", "f16"),
                                                                                         ("exact", "q8_0"),
                                                                                         ("exact", "q4_0")}), arch
        for r in mine:
            assert r["queries"] >= 50
            assert 0.0 <= r["greedy_agreement"] <= 1.0 and 0.0 <= r["top1_agreement"] <= 1.0
            assert r["max_logprob_gap"] >= 0.0


def test_note_reads_the_row_of_a_setting() -> None:
    row = next(r for r in fidelity.table() if r["arch"] == "gemma3" and r["mode"] == "compact" and r["kv"] == "q4_0")
    n = fidelity.note("gemma3", True, "compact", "q4_0")
    assert n["measured"] and n["safe"] == (row["greedy_agreement"] >= fidelity.SAFE)
    assert f"of {row['queries']} greedy answers" in n["text"]
    # without a sliding window, compact and exact are the same bytes: the exact row answers
    assert fidelity.note("llama", False, "compact", "f16")["mode"] == "exact"
    unknown = fidelity.note("mamba", False, "exact", "f16")
    assert not unknown["measured"] and unknown["safe"] is None and "not measured" in unknown["text"]


def _aotcc(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, AOTCC_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.model
@pytest.mark.parametrize("kv", ["f16", "q4_0"])
def test_prefill_warns_below_the_safe_line_and_info_says_what_was_measured(tmp_path: Path, kv: str) -> None:
    prompt = tmp_path / "p.md"
    prompt.write_text("The hub restarts at night. Safe Mode needs the reset button held for ten seconds.\n")
    c = tmp_path / "p.aotc"
    _aotcc("compile", prompt, "-t", EXAMPLE_TERMS, "-o", c, "-q")
    b = tmp_path / f"{kv}.aotkv"
    err = _aotcc("prefill", c, "-o", b, "--kv-type", kv).stderr
    expected = fidelity.note("gemma3", True, "compact", kv)
    assert expected["measured"]
    assert ("warning" in err) == (expected["safe"] is False), err
    info = json.loads(_aotcc("info", b, "--json").stdout)
    assert info["fidelity"]["text"] == expected["text"]
    assert expected["text"] in _aotcc("info", b).stdout
