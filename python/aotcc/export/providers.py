"""Provider limits: each hosted cache's rules (breakpoints, TTLs, multipliers) and its
model families (minimum cacheable length, prices), read from `export/providers.toml`,
where every number names the page it came from and the date it was read."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aotcc._io import read_input
from aotcc.errors import InputError

TARGETS = ("anthropic", "openai", "gemini", "llama-server")
DAY = 86400
#: The longest duration accepted (a cache TTL): ten years.
MAX_DURATION = 3650 * DAY

DATA_FILE = Path(__file__).resolve().parent / "providers.toml"
_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")


@dataclass(frozen=True)
class Family:
    """One model family of a provider: its minimum cacheable length and prices."""

    provider: str
    name: str
    models: tuple[str, ...]
    min_cache_tokens: int
    read_multiplier: float | None
    input_price: float | None
    output_price: float | None
    storage_price: float | None
    missing: str | None
    sources: dict[str, str]


@dataclass(frozen=True)
class Provider:
    """A provider's cache rules (breakpoints, TTLs, multipliers) and its families."""

    name: str
    table: dict[str, Any]
    families: tuple[Family, ...]
    sources: dict[str, dict[str, str]]

    @property
    def max_breakpoints(self) -> int:
        return int(self.table.get("max_breakpoints", 0))

    @property
    def ttls(self) -> list[str]:
        return list(self.table.get("ttls", []))

    @property
    def default_model(self) -> str:
        return str(self.table["default_model"])

    def write_multiplier(self, ttl: str | None) -> float:
        w = self.table.get("write_multiplier", 1.0)
        if isinstance(w, dict):
            return float(w[ttl or self.table["default_ttl"]])
        return float(w)

    def lifetime_s(self, ttl: str | None) -> int:
        """How long a cache entry lives after its last use (or creation, for Gemini)."""
        ttl = ttl or self.table.get("default_ttl")
        table = self.table.get("lifetime_seconds", {})
        if ttl in table:
            return int(table[ttl])
        return parse_duration(str(ttl), "--ttl")

    def family(self, model: str | None) -> tuple[Family, str]:
        """The family of API model id `model` (a date or version suffix is allowed)."""
        model = model or self.default_model
        bare = model.removeprefix("models/")
        for cand in (bare, _SUFFIX.sub("", bare)):
            for f in self.families:
                if cand in f.models:
                    return f, bare
        known = ", ".join(m for f in self.families for m in f.models)
        raise InputError(
            f"--model {model}: unknown model family for {self.name}; known: {known} "
            f"(add a [[providers.{self.name}.family]] to {DATA_FILE.name} with its limits and sources)"
        )


def parse_duration(text: str, what: str) -> int:
    """Seconds in `300s`, `5m`, `1h`, `2d` (the Gemini API takes `<seconds>s`)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise InputError(f"{what} {text!r}: expected a duration such as 300s, 5m, 1h")
    secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": DAY}[m.group(2)]
    if secs <= 0:
        raise InputError(f"{what} {text!r}: must be positive")
    if secs > MAX_DURATION:
        raise InputError(f"{what} {text[:40]!r}: more than {MAX_DURATION // DAY} days")
    return int(math.ceil(secs))


def _num(t: dict[str, Any], key: str) -> float | None:
    v = t.get(key)
    return None if v is None else float(v)


def load_providers(path: str | os.PathLike[str] | None = None) -> dict[str, Provider]:
    """Reads and checks the provider table: every number must name a known source."""
    if path is None:
        return _default_providers()
    return _parse_providers(Path(path))


@lru_cache(maxsize=1)
def _default_providers() -> dict[str, Provider]:
    return _parse_providers(DATA_FILE)


def _parse_providers(path: Path) -> dict[str, Provider]:
    try:
        data = tomllib.loads(read_input(path).decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from None
    sources = data.get("sources", {})
    out: dict[str, Provider] = {}
    for pname, table in data.get("providers", {}).items():
        def need_source(t: dict[str, Any], key: str, where: str) -> None:
            ref = t.get(key)
            if ref not in sources:
                raise InputError(f"{path}: {where}: {key} {ref!r} is not a [sources] entry")

        for key in ("max_breakpoints", "min_cache_tokens", "write_multiplier", "read_multiplier", "ttls"):
            if key in table:
                src = {"write_multiplier": "multipliers_source", "read_multiplier": "multipliers_source",
                       "ttls": "ttls_source"}.get(key, f"{key}_source")
                need_source(table, src, f"providers.{pname}")
        fams = []
        for f in table.get("family", []):
            where = f"providers.{pname} family {f.get('name')!r}"
            refs: dict[str, str] = {}
            if "min_cache_tokens" in f:
                need_source(f, "min_cache_tokens_source", where)
                refs["min_cache_tokens"] = f["min_cache_tokens_source"]
            elif "min_cache_tokens" in table:
                refs["min_cache_tokens"] = table["min_cache_tokens_source"]
            else:
                raise InputError(f"{path}: {where}: no min_cache_tokens")
            if any(k in f for k in ("input_usd_per_mtok", "output_usd_per_mtok", "storage_usd_per_mtok_hour", "read_multiplier")):
                need_source(f, "price_source", where)
                refs["prices"] = f["price_source"]
            for key, src in (("multipliers", "multipliers_source"), ("max_breakpoints", "max_breakpoints_source")):
                if src in table:
                    refs[key] = table[src]
            min_tokens = int(f.get("min_cache_tokens", table.get("min_cache_tokens", 0)))
            read = f.get("read_multiplier", table.get("read_multiplier"))
            fams.append(Family(
                provider=pname, name=str(f["name"]), models=tuple(f["models"]), min_cache_tokens=min_tokens,
                read_multiplier=None if read is None else float(read),
                input_price=_num(f, "input_usd_per_mtok"), output_price=_num(f, "output_usd_per_mtok"),
                storage_price=_num(f, "storage_usd_per_mtok_hour"), missing=f.get("missing"),
                sources={k: sources[v]["url"] for k, v in refs.items()},
            ))
        out[pname] = Provider(pname, {k: v for k, v in table.items() if k != "family"}, tuple(fams), sources)
    missing = [t for t in TARGETS if t not in out]
    if missing:
        raise InputError(f"{path}: no [providers.{missing[0]}] table")
    return out


def provider(target: str) -> Provider:
    if target not in TARGETS:
        raise InputError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}")
    return _default_providers()[target]


__all__ = ["DAY", "TARGETS", "Family", "Provider", "load_providers", "parse_duration", "provider"]
