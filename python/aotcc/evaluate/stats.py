"""Statistics for `aotcc eval`: intervals for one topology, paired tests between two.

Every topology answers the same questions, so two topologies are compared question by
question, not by whether their intervals overlap:

- the exact McNemar test looks only at the discordant questions (right in one layout,
  wrong in the other): under "no difference" each is equally likely to go either way,
  so the count one way is Binomial(b + c, 1/2);
- the paired bootstrap resamples questions (the same draw for both layouts) and gives a
  95% interval for the difference in accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends, not rounding noise
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for `b` questions right only in the first layout
    and `c` right only in the second: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2),
    capped at 1 (1 when there is no discordant question)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # the tail in log space: exact for any n a suite can have
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    m = max(logs)
    tail = math.exp(m) * sum(math.exp(x - m) for x in logs)
    return min(1.0, 2.0 * tail)


def paired_bootstrap(
    a: Sequence[bool], b: Sequence[bool], *, samples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """The accuracy difference a − b over paired questions and its 95% percentile
    interval from `samples` resamples of the questions (seeded: the same inputs give
    the same interval)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("paired_bootstrap: the two layouts answered different numbers of questions")
    n = len(x)
    if n == 0:
        return (0.0, 0.0, 0.0)
    d = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    step = max(1, 2_000_000 // max(n, 1))  # bounded memory: resample in blocks
    for s in range(0, samples, step):
        k = min(step, samples - s)
        idx = rng.integers(0, n, size=(k, n))
        means[s : s + k] = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(d.mean()), float(lo), float(hi))


@dataclass(frozen=True)
class Paired:
    """Two layouts on the same questions."""

    a: str
    b: str
    n: int
    both: int  # right in both
    only_a: int  # right in a, wrong in b
    only_b: int
    neither: int
    diff: float  # accuracy(a) - accuracy(b)
    ci95: tuple[float, float]
    p_mcnemar: float

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "n": self.n, "both": self.both, "only_a": self.only_a,
                "only_b": self.only_b, "neither": self.neither, "diff": round(self.diff, 4),
                "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)], "p_mcnemar": self.p_mcnemar}


def paired(name_a: str, a: Sequence[bool], name_b: str, b: Sequence[bool], *, seed: int = 0) -> Paired:
    """McNemar and the paired bootstrap for layouts `a` and `b` on the same questions."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} answered {len(a)} and {len(b)} questions")
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    diff, lo, hi = paired_bootstrap(a, b, seed=seed)
    return Paired(name_a, name_b, len(a), both, only_a, only_b, len(a) - both - only_a - only_b, diff, (lo, hi),
                  mcnemar_exact(only_a, only_b))


__all__ = ["Paired", "mcnemar_exact", "paired", "paired_bootstrap", "wilson"]
