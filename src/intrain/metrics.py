"""Evaluation metrics: unbiased pass@k and avg@n. (RL's zero-advantage ratio is TRL's frac_reward_zero_std.)"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Computed in the product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never overflows.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(groups: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems; each group holds one problem's sample verdicts."""
    if not groups:
        return 0.0
    return sum(pass_at_k(len(g), sum(g), k) for g in groups) / len(groups)


def avg_at_n(groups: Sequence[Sequence[bool]]) -> float:
    """Mean correctness over all samples of each problem, averaged over problems (= pass@1)."""
    if not groups:
        return 0.0
    return sum(sum(g) / len(g) for g in groups) / len(groups)
