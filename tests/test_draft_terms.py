"""Drafting a term spec without the model: the common-word filter (a single word that is
one token of the model's vocabulary is an everyday word, not a term), the glossary
extractor behind it, and the miner of names a prompt keeps using, scored against the
example prompt's own spec with its glossary removed.

The vocabulary is read by the core's GGUF tokenizer (no llama.cpp), so these are fast.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from aotcc.analyze import Cache
from aotcc.analyze import draft as draft_mod
from aotcc.counting import gguf_tokenizer
from aotcc.models import default_model

ROOT = Path(__file__).resolve().parent.parent

CLINIC = """# Riverside clinic handbook

## Staff

- **Nurse**: Checks in every patient and records vital signs before the consultation.
- **Duty Doctor**: The doctor who takes urgent walk-ins on a given day.

## Appointment types

- **Long**: A 30-minute slot for patients with several problems.
- **Routine**: A 10-minute slot booked up to four weeks ahead.
- **Same-Day Slot**: A slot held back each morning for patients who call before 9am.
- Triage Call Back (TCB) — A phone call from a nurse within two hours to decide how soon a patient is seen.
"""


@pytest.fixture(scope="module")
def count():
    tok = gguf_tokenizer(default_model())
    return lambda text: int(tok([text])[0])


def test_common_single_words_are_not_terms(count):
    for word in ("Nurse", "Long", "Routine", "routine", "Note", "Escalated"):
        assert draft_mod.is_common(word, count), word
    # names of several words, acronyms, coined or hyphenated names and words with digits pass
    for name in ("Relay Hub", "Duty Doctor", "RMA", "TCB", "Chargeback", "Resolved-Monitoring", "Same-Day", "G3"):
        assert not draft_mod.is_common(name, count), name
    # without a vocabulary, the built-in list still knows the usual bullet labels
    for word in ("Nurse", "Long", "Routine"):
        assert draft_mod.is_common(word, None), word
    assert not draft_mod.is_common("Chargeback", None)


def test_draft_drops_bold_bullets_that_are_common_words(count):
    d = draft_mod.draft(None, Cache(None), CLINIC, use_model=False, count=count)
    names = [e.name for e in d.entries]
    assert names == ["Duty Doctor", "Same-Day Slot", "Triage Call Back"], names
    assert next(e for e in d.entries if e.name == "Triage Call Back").aliases == ["TCB"]
    assert sorted(r.split(":")[0] for r in d.dropped) == ["Long", "Nurse", "Routine"]
    toml = draft_mod.to_toml(d, "clinic.md", None)
    assert "# left out: Nurse: a common word" in toml and 'name = "Nurse"' not in toml


def _recall(entries: list[draft_mod.Entry], spec: list[dict]) -> tuple[float, list[str]]:
    drafted = {n.casefold() for e in entries for n in [e.name, *e.aliases]}
    missed = [t["name"] for t in spec if not any(n.casefold() in drafted for n in [t["name"], *t.get("aliases", [])])]
    return 1 - len(missed) / len(spec), missed


def test_mined_names_recover_the_example_spec(count):
    """The example prompt without its spec: the extractor and the miner alone find most of
    the spec's terms (by name or alias), each with a definition taken from the prompt,
    and no entry is a common single word."""
    text = (ROOT / "examples" / "support_agent.md").read_text()
    spec = tomllib.loads((ROOT / "examples" / "support_terms.toml").read_text())["term"]
    d = draft_mod.draft(None, Cache(None), text, use_model=False, count=count)
    recall, missed = _recall(d.entries, spec)
    assert recall >= 0.7, (recall, missed)
    assert not [e.name for e in d.entries if draft_mod.is_common(e.name, count)]
    assert all(len(e.definition.split()) >= 3 for e in d.entries)
    fc = next(e for e in d.entries if e.name == "Fault Confirmation")
    assert fc.definition.startswith("A Fault Confirmation is"), fc.definition
    # the miner alone, without the glossary-shaped lines, still finds most of them
    assert _recall(draft_mod.mine(text, count=count), spec)[0] >= 0.6
