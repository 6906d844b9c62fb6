"""Confidence intervals for the numbers we report: rates, means over units, paired differences.

Units are what varies independently: an attempt (its n continuations are not independent samples
of the method), a problem (for pass@k). Intervals are 95% by default; bootstrap intervals are
percentile intervals with a fixed seed, so a table is reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (well-behaved at 0 and n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    values = sorted(values)
    lo = values[math.floor((1 - level) / 2 * (len(values) - 1))]
    hi = values[math.ceil((1 + level) / 2 * (len(values) - 1))]
    return lo, hi


def bootstrap_mean_interval(
    values: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over independent units."""
    if not values:
        return 0.0, 1.0
    rng = random.Random(seed)
    n = len(values)
    means = [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    return _percentiles(means, level)


def paired_bootstrap_difference(
    treated: Mapping[str, float],
    control: Mapping[str, float],
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean difference, low, high) of treated - control over the units both have, resampling units.

    Pairing by unit (problem) removes the between-problem variance both arms share, which is most
    of it on small evaluation sets."""
    units = sorted(set(treated) & set(control))
    if not units:
        raise ValueError("paired_bootstrap_difference: the two arms share no unit")
    diffs = [treated[u] - control[u] for u in units]
    lo, hi = bootstrap_mean_interval(diffs, resamples, level, seed)
    return sum(diffs) / len(diffs), lo, hi


def bootstrap_difference(
    after: Sequence[float], before: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean difference, low, high) of mean(after) - mean(before), two independent samples each resampled
    on its own: e.g. the training reward of RL's last steps against its first (each step draws new prompts)."""
    if not after or not before:
        raise ValueError("bootstrap_difference: both samples need at least one value")
    rng = random.Random(seed)

    def resampled_mean(values: Sequence[float]) -> float:
        return sum(values[rng.randrange(len(values))] for _ in values) / len(values)

    diffs = [resampled_mean(after) - resampled_mean(before) for _ in range(resamples)]
    lo, hi = _percentiles(diffs, level)
    return sum(after) / len(after) - sum(before) / len(before), lo, hi
