"""The Hungarian assignment finds the cheapest matching (checked against brute force) and honours the cost cap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.detection.assignment import assign


def brute_force(cost: np.ndarray, max_cost: float) -> tuple[int, float]:
    """(fewest unmatched rows, then the least total cost) over every matching of allowed pairs."""
    n, m = cost.shape
    best = (n + 1, float("inf"))
    for cols in itertools.permutations(range(max(n, m)), n):
        kept = [cost[r, c] for r, c in enumerate(cols) if c < m and cost[r, c] <= max_cost]
        best = min(best, (n - len(kept), float(sum(kept))))
    return best


def score(cost: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[int, float]:
    return cost.shape[0] - len(pairs), float(sum(cost[r, c] for r, c in pairs))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 5), (5, 2), (4, 4), (6, 6)])
def test_matches_the_brute_force_optimum(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(30):
        cost = rng.random(shape)
        pairs = assign(cost, max_cost=0.7)
        assert len({r for r, _ in pairs}) == len(pairs) and len({c for _, c in pairs}) == len(pairs)
        assert all(cost[r, c] <= 0.7 for r, c in pairs)
        unmatched, total = score(cost, pairs)
        best_unmatched, best_total = brute_force(cost, 0.7)
        assert unmatched == best_unmatched and total == pytest.approx(best_total)


def test_prefers_the_global_optimum_over_the_greedy_pick() -> None:
    # Greedy takes (0, 0) at 0.1 and is left with (1, 1) at 0.9; the optimum pairs crosswise for 0.4.
    cost = np.array([[0.1, 0.2], [0.2, 0.9]])
    assert assign(cost, max_cost=1.0) == [(0, 1), (1, 0)]


def test_pairs_above_the_cap_are_never_returned() -> None:
    assert assign(np.array([[0.95, 0.99]]), max_cost=0.8) == []
    assert assign(np.zeros((0, 3)), max_cost=0.8) == []


def test_independent_groups_are_solved_apart_with_the_same_answer() -> None:
    rng = np.random.default_rng(7)
    cost = np.ones((40, 40))
    for k in range(10):  # ten 4x4 blocks along the diagonal, nothing allowed between them
        block = slice(4 * k, 4 * k + 4)
        cost[block, block] = rng.random((4, 4)) * 0.6
    pairs = assign(cost, max_cost=0.7)
    assert len(pairs) == 40 and all(r // 4 == c // 4 for r, c in pairs)
    for k in range(10):
        block = cost[4 * k : 4 * k + 4, 4 * k : 4 * k + 4]
        mine = [(r - 4 * k, c - 4 * k) for r, c in pairs if r // 4 == k]
        assert score(block, mine)[1] == pytest.approx(brute_force(block, 0.7)[1])
