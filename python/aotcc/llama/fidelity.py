"""What the project measured about each bundle setting's fidelity against a cold f16
prefill (scripts/measure_fidelity.py, on this build): greedy answer agreement, top-1
agreement per generated position, and the largest log-probability gap of the chosen
token. `prefill` warns, and `info` says, when a setting falls below `SAFE`.

The figures live in `fidelity.toml` beside this module, one row per (architecture,
mode, KV type); docs/bundles.md shows the same table.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "fidelity.toml"
#: the greedy agreement below which a setting is called unsafe: more than one answer in
#: ten differs from what a cold prefill would say
SAFE = 0.9


@lru_cache(maxsize=1)
def table() -> list[dict[str, Any]]:
    try:
        doc = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    rows = doc.get("row", [])
    return [r for r in rows if isinstance(r, dict)]


def note(arch: str, swa: bool, mode: str, kv: str) -> dict[str, Any]:
    """The measured fidelity of a setting, as `{"measured": bool, "safe": bool|None, "text": str, ...}`."""
    mode = mode if swa else "exact"  # without a sliding window the two modes store the same bytes
    for r in table():
        if r.get("arch") == arch and r.get("mode") == mode and r.get("kv") == kv:
            safe = float(r["greedy_agreement"]) >= SAFE
            text = (f"measured on {r['model']}: {float(r['greedy_agreement']):.0%} of {r['queries']} greedy answers equal a "
                    f"cold f16 prefill's, top-1 agreement {float(r['top1_agreement']):.1%} per position, largest "
                    f"log-probability gap {float(r['max_logprob_gap']):.3f}")
            if not safe:
                text += f" (below the {SAFE:.0%} the project calls safe: answers may flip; use f16 or --exact)"
            return {"measured": True, "safe": safe, "text": text, **r}
    return {"measured": False, "safe": None,
            "text": f"not measured for {arch or 'this architecture'} with {mode}/{kv} (scripts/measure_fidelity.py)"}


__all__ = ["DATA_FILE", "SAFE", "note", "table"]
