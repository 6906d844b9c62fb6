from math import comb

import pytest

from intrain.metrics import avg_at_n, mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 4), (16, 1, 8), (128, 5, 8), (8, 0, 4), (8, 8, 1), (5, 2, 4)])
def test_pass_at_k_matches_binomial_formula(n, c, k):
    expected = 1.0 if n - c < k else 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_accuracy_and_bounds():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_group_level_metrics():
    groups = [[True, False, False, False], [False] * 4, [True] * 4]
    assert avg_at_n(groups) == pytest.approx((0.25 + 0 + 1) / 3)
    assert mean_pass_at_k(groups, 4) == pytest.approx(2 / 3)
