import random

import pytest

from intrain.stats import (
    bootstrap_difference,
    bootstrap_mean_interval,
    paired_bootstrap_difference,
    wilson_interval,
)


def test_wilson_matches_known_values():
    # Reference values from the closed form (Wilson 1927), e.g. 10/100 -> [0.0552, 0.1744].
    lo, hi = wilson_interval(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = random.Random(1)
    small = [float(rng.random() < 0.3) for _ in range(30)]
    large = [float(rng.random() < 0.3) for _ in range(3000)]
    lo_s, hi_s = bootstrap_mean_interval(small)
    lo_l, hi_l = bootstrap_mean_interval(large, resamples=500)
    assert lo_s <= sum(small) / 30 <= hi_s and lo_l <= sum(large) / 3000 <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap_mean_interval(small) == bootstrap_mean_interval(small)  # seeded


def test_paired_difference_uses_shared_units_and_pairing():
    control = {f"p{i}": i / 10 for i in range(10)}
    treated = {k: v + 0.1 for k, v in control.items()} | {"extra": 1.0}
    diff, lo, hi = paired_bootstrap_difference(treated, control)
    # Same shift on every problem: zero variance once paired, however different the problems are.
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    with pytest.raises(ValueError, match="share no unit"):
        paired_bootstrap_difference({"a": 1.0}, {"b": 0.0})


def test_unpaired_difference_separates_a_shift_from_noise():
    rng = random.Random(2)
    before = [0.4 + rng.gauss(0, 0.05) for _ in range(25)]
    shifted = [0.5 + rng.gauss(0, 0.05) for _ in range(25)]
    same = [0.4 + rng.gauss(0, 0.05) for _ in range(25)]
    diff, lo, hi = bootstrap_difference(shifted, before)
    assert diff == pytest.approx(sum(shifted) / 25 - sum(before) / 25)
    assert 0.05 < lo <= diff <= hi < 0.15
    _, lo, hi = bootstrap_difference(same, before)
    assert lo < 0 < hi
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_difference([], before)
