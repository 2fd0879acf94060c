"""The cost estimate: tokens and USD per day with and without a provider's cache, and
the break-even request volume, from the limits and prices in `export/providers.toml`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aotcc.errors import InputError
from aotcc.export.providers import DAY, provider


@dataclass
class Estimate:
    """Tokens and cost per day with and without the cache, and the break-even volume."""

    target: str
    family: str
    requests_per_day: int
    static_tokens: int
    dynamic_tokens: int
    output_tokens: int
    prices: dict[str, float | None]
    ttl: str | None
    lifetime_s: int | None
    warm: bool
    writes_per_day: int
    reads_per_day: int
    without: dict[str, float | int | None]
    with_cache: dict[str, float | int | None]
    break_even_requests_per_day: int | None
    assumptions: list[str]

    @property
    def saved_usd(self) -> float | None:
        a, b = self.without["total_usd"], self.with_cache["total_usd"]
        return None if a is None or b is None else float(a) - float(b)

    def to_dict(self) -> dict[str, Any]:
        saved = self.saved_usd
        a = self.without["total_usd"]
        return {
            "target": self.target, "family": self.family, "requests_per_day": self.requests_per_day,
            "static_tokens": self.static_tokens, "dynamic_tokens": self.dynamic_tokens,
            "output_tokens": self.output_tokens, "prices": self.prices, "ttl": self.ttl,
            "cache_lifetime_s": self.lifetime_s, "cache_warm": self.warm, "writes_per_day": self.writes_per_day,
            "reads_per_day": self.reads_per_day, "without_cache": self.without, "with_cache": self.with_cache,
            "saved_usd_per_day": None if saved is None else round(saved, 6),
            "saved_percent": None if saved is None or not a else round(100 * saved / float(a), 2),
            "break_even_requests_per_day": self.break_even_requests_per_day, "assumptions": self.assumptions,
        }

    def table(self) -> str:
        d = self.to_dict()
        w, c = self.without, self.with_cache

        def usd(v: Any) -> str:
            return "n/a" if v is None else f"${v:,.4f}"

        rows = [
            ("static tokens at full price", f"{w['static_full']:,}", f"{c['static_full']:,}"),
            ("static tokens written to cache", "0", f"{c['static_written']:,}"),
            ("static tokens read from cache", "0", f"{c['static_read']:,}"),
            ("dynamic tokens", f"{w['dynamic']:,}", f"{c['dynamic']:,}"),
            ("output tokens", f"{w['output']:,}", f"{c['output']:,}"),
            ("input cost", usd(w["input_usd"]), usd(c["input_usd"])),
            ("cache storage", usd(w["storage_usd"]), usd(c["storage_usd"])),
            ("output cost", usd(w["output_usd"]), usd(c["output_usd"])),
            ("total per day", usd(w["total_usd"]), usd(c["total_usd"])),
        ]
        lines = [f"{self.target} {self.family}: {self.requests_per_day:,} requests/day, {self.static_tokens:,} static + "
                 f"{self.dynamic_tokens:,} dynamic input tokens, {self.output_tokens:,} output tokens per request", ""]
        lines.append(f"  {'per day':<32} {'without cache':>16} {'with cache':>16}")
        lines += [f"  {a:<32} {b:>16} {x:>16}" for a, b, x in rows]
        if d["saved_usd_per_day"] is not None:
            lines.append(f"\n  saved {usd(d['saved_usd_per_day'])} per day ({d['saved_percent']}%)")
        be = self.break_even_requests_per_day
        lines.append(f"  break-even: {be:,} requests/day" if be is not None else "  break-even: never (no saving)")
        lines.append("\n  assumptions:")
        lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines) + "\n"


def estimate(
    target: str,
    *,
    static_tokens: int,
    requests_per_day: int,
    dynamic_tokens: int,
    output_tokens: int = 0,
    model: str | None = None,
    ttl: str | None = None,
    price_input: float | None = None,
    price_output: float | None = None,
    read_multiplier: float | None = None,
    storage_price: float | None = None,
) -> Estimate:
    """Tokens and USD per day with and without the provider's cache.

    Model: requests arrive evenly spaced over the day. Anthropic and OpenAI keep an
    entry alive while hits come within its lifetime (TTL), so steady traffic writes once
    a day and reads on every other request; slower traffic writes on every request.
    Gemini keeps an explicit cache for its TTL used or not: it is created once per TTL
    and stored all day, and every request reads it. Break-even is the smallest number of
    requests per day at which the cache costs less.
    """
    prov = provider(target)
    fam, _ = prov.family(model)
    if ttl is not None and prov.ttls and ttl not in prov.ttls:
        raise InputError(f"--ttl {ttl}: {target} takes {' or '.join(prov.ttls)}")
    for name, v in (("--requests-per-day", requests_per_day), ("--dynamic-tokens", dynamic_tokens),
                    ("--output-tokens", output_tokens), ("static tokens", static_tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 10**12 or (name == "--requests-per-day" and v == 0):
            lo = "1" if name == "--requests-per-day" else "0"
            raise InputError(f"{name} {v!r}: expected a whole number from {lo} to 1,000,000,000,000")
    for name, x in (("--price-input", price_input), ("--price-output", price_output),
                    ("--read-multiplier", read_multiplier), ("--storage-price", storage_price)):
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1e9):
            raise InputError(f"{name} {x!r}: expected a finite number from 0 to 1e9")
    n, s, d, o = requests_per_day, static_tokens, dynamic_tokens, output_tokens
    assumptions = [f"requests arrive evenly spaced: one every {DAY / n:,.1f} s"]
    if target == "llama-server":
        empty: dict[str, float | int | None] = {"static_full": n * s, "static_written": 0, "static_read": 0, "dynamic": n * d, "output": n * o,
                 "input_usd": None, "storage_usd": None, "output_usd": None, "total_usd": None,
                 "prefill_tokens": n * (s + d)}
        cached = dict(empty, static_full=0, static_read=n * s, prefill_tokens=n * d)
        assumptions.append("local server: no token prices; with a restored slot (or cache_prompt hits) only the "
                           "dynamic tokens are prefilled")
        return Estimate(target, fam.name, n, s, d, o, {}, None, None, True, 0, n, empty, cached, 1, assumptions)
    pin = price_input if price_input is not None else fam.input_price
    pout = price_output if price_output is not None else fam.output_price
    r = read_multiplier if read_multiplier is not None else fam.read_multiplier
    if pin is None or r is None:
        raise InputError(f"{fam.name}: no input price or cache-read multiplier in providers.toml "
                         f"({fam.missing or 'not recorded'}); pass --price-input and --read-multiplier")
    if pout is None and o:
        raise InputError(f"{fam.name}: no output price in providers.toml; pass --price-output")
    pout = pout or 0.0
    w = prov.write_multiplier(ttl)
    life = prov.lifetime_s(ttl)
    mtok = 1e6
    without: dict[str, float | int | None] = {"static_full": n * s, "static_written": 0, "static_read": 0, "dynamic": n * d, "output": n * o,
               "input_usd": n * (s + d) * pin / mtok, "storage_usd": 0.0, "output_usd": n * o * pout / mtok}
    storage = 0.0
    if prov.table.get("lifetime_refreshes", True):
        warm = DAY / n <= life
        writes = 1 if warm else n
        reads = n - writes
        full = 0
        if s < fam.min_cache_tokens:  # below the minimum nothing is cached: every request pays full price
            writes, reads, full, warm = 0, 0, n, False
        assumptions.append(
            f"an entry lives {life:,} s after its last hit (ttl {ttl or prov.table.get('default_ttl')}); "
            + ("hits keep it warm, so it is written once a day" if warm and writes else
               "requests come further apart than that, so every request writes it anew" if writes else
               "the static prefix is below the minimum, so nothing is cached"))
        be = None
        if r < 1 and s >= fam.min_cache_tokens:
            be = max(math.ceil(DAY / life), math.floor(1 + (w - 1) / (1 - r)) + 1)
    else:  # explicit cache with a fixed lifetime (Gemini): created per TTL, stored all day
        creations = max(1, math.ceil(DAY / life))
        writes, reads, full, warm = creations, n, 0, True
        g = storage_price if storage_price is not None else fam.storage_price
        if g is None:
            raise InputError(f"{fam.name}: no cache storage price in providers.toml; pass --storage-price")
        storage = s * g * 24 / mtok
        assumptions.append(f"the cache is created {creations}x per day (ttl {life:,} s) and stored all day "
                           f"at ${g}/MTok/hour")
        be = math.floor((creations * w * pin + 24 * g) / (pin * (1 - r))) + 1 if r < 1 else None
        if s < fam.min_cache_tokens:
            writes, reads, full, storage, be = 0, 0, n, 0.0, None
    assumptions.append(f"cache writes cost {w}x and reads {r}x the input price of ${pin}/MTok")
    input_with = (writes * s * w + reads * s * r + full * s + n * d) * pin / mtok
    with_cache: dict[str, float | int | None] = {"static_full": full * s, "static_written": writes * s, "static_read": reads * s, "dynamic": n * d,
                  "output": n * o, "input_usd": input_with, "storage_usd": storage, "output_usd": n * o * pout / mtok}
    for t in (without, with_cache):
        t["total_usd"] = sum(float(t[k] or 0.0) for k in ("input_usd", "storage_usd", "output_usd"))
        for k in ("input_usd", "storage_usd", "output_usd", "total_usd"):
            t[k] = round(float(t[k] or 0.0), 6)
    prices: dict[str, float | None] = {"input_usd_per_mtok": pin, "output_usd_per_mtok": pout, "write_multiplier": w, "read_multiplier": r}
    return Estimate(target, fam.name, n, s, d, o, prices, ttl or prov.table.get("default_ttl"), life, warm,
                    writes, reads, without, with_cache, be, assumptions)



__all__ = ["Estimate", "estimate"]
