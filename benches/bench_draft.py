"""`aotcc analyze --draft-terms` on the real Gemma 3 270M model: the example prompt
(examples/support_agent.md, which has no glossary section: its terms live in
examples/support_terms.toml) drafted from scratch, uncached, and scored against that
spec. A spec term counts as recovered when a drafted name or alias equals one of its
names or aliases (case-insensitive).

`extra_info` records the recall of the whole draft, of the glossary extractor and miner
alone (no model), and of the model's proposals alone, the common single words proposed
(the goal is none), how many of the model's answers parsed, and the seconds. The goal:
recall >= 0.7 and no common single words. Too slow for a test (the model writes a
JSON answer for each of 12 pieces), so it is a bench.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import llama_cpp  # noqa: F401  (`make bench` needs `make llama`; missing, it is an error, not a skip)
import pytest

from aotcc.analyze import Cache, Engine
from aotcc.analyze import draft as draft_mod

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    yield e
    e.close()


def _recall(entries: list[draft_mod.Entry], spec: list[dict]) -> float:
    drafted = {n.casefold() for e in entries for n in [e.name, *e.aliases]}
    found = [t for t in spec if any(n.casefold() in drafted for n in [t["name"], *t.get("aliases", [])])]
    return len(found) / len(spec)


def test_draft_recall(benchmark, engine):
    text = (ROOT / "examples" / "support_agent.md").read_text()
    spec = tomllib.loads((ROOT / "examples" / "support_terms.toml").read_text())["term"]
    count = draft_mod.counter_of(engine.tokenize)
    out: dict[str, draft_mod.Draft] = {}
    t = time.perf_counter()
    benchmark.pedantic(lambda: out.setdefault("d", draft_mod.draft(engine, Cache(None), text)), rounds=1, iterations=1)
    secs = time.perf_counter() - t
    d = out["d"]
    no_model = draft_mod.draft(None, Cache(None), text, use_model=False, count=count)
    model_only = [e for e in d.entries if e.origin == "model"]
    proposed = d.proposals  # what the model proposed, before the merge dropped names the other sources had
    common = [e.name for e in d.entries if draft_mod.is_common(e.name, count)]
    info = {
        "suite": "draft", "contender": "analysis: draft-terms (support_agent.md)", "terms_in_spec": len(spec),
        "recall": _recall(d.entries, spec), "recall_without_model": _recall(no_model.entries, spec),
        "recall_model_proposals": _recall(proposed, spec), "model_entries_added": len(model_only),
        "common_single_words": common, "entries": len(d.entries),
        "answers_ok": sum(a["ok"] for a in d.attempts), "answers": len(d.attempts), "seconds": secs,
    }
    benchmark.extra_info.update(info)
    print(f"\ndraft: recall {info['recall']:.2f} ({info['recall_without_model']:.2f} without the model, "
          f"{info['recall_model_proposals']:.2f} from the model's proposals alone); {len(d.entries)} entries, "
          f"{len(model_only)} added by the model; {info['answers_ok']}/{info['answers']} answers parsed; "
          f"common single words: {common}; {secs:.1f} s")
