"""The Hungarian assignment finds the cheapest matching (checked against brute force) and honours the cost cap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.detection.assignment import assign


def brute_force(cost: np.ndarray, max_cost: float) -> float:
    """Cheapest total over every partial matching of allowed pairs, with unmatched rows costing max_cost + 1."""
    n, m = cost.shape
    best = float("inf")
    penalty = max_cost + 1.0
    for cols in itertools.permutations(range(max(n, m)), n):
        total = 0.0
        for r, c in enumerate(cols):
            total += cost[r, c] if c < m and cost[r, c] <= max_cost else penalty
        best = min(best, total)
    return best


def total(cost: np.ndarray, pairs: list[tuple[int, int]], max_cost: float) -> float:
    matched = {r for r, _ in pairs}
    return sum(cost[r, c] for r, c in pairs) + (max_cost + 1.0) * (cost.shape[0] - len(matched))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 5), (5, 2), (4, 4)])
def test_matches_the_brute_force_optimum(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(30):
        cost = rng.random(shape)
        pairs = assign(cost, max_cost=0.7)
        assert len({r for r, _ in pairs}) == len(pairs) and len({c for _, c in pairs}) == len(pairs)
        assert all(cost[r, c] <= 0.7 for r, c in pairs)
        assert total(cost, pairs, 0.7) == pytest.approx(brute_force(cost, 0.7))


def test_prefers_the_global_optimum_over_the_greedy_pick() -> None:
    # Greedy takes (0, 0) at 0.1 and is left with (1, 1) at 0.9; the optimum pairs crosswise for 0.4.
    cost = np.array([[0.1, 0.2], [0.2, 0.9]])
    assert assign(cost, max_cost=1.0) == [(0, 1), (1, 0)]


def test_pairs_above_the_cap_are_never_returned() -> None:
    assert assign(np.array([[0.95, 0.99]]), max_cost=0.8) == []
    assert assign(np.zeros((0, 3)), max_cost=0.8) == []
