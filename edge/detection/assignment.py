"""Minimum-cost one-to-one assignment (the Hungarian method), so the tracker needs no scipy on a device.

The edge install carries no scipy (pyproject's `edge` extra); this is the O(n^2 m) shortest augmenting path form
with its inner loop in numpy, plenty for the tens of objects one camera frame holds.
"""

from __future__ import annotations

import numpy as np


def _solve(cost: np.ndarray) -> list[int]:
    """Column of each row for a rows <= cols cost matrix (potentials method, 1-based internals)."""
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: row matched to column j (0: none)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            used_idx = np.nonzero(used)[0]
            u[p[used_idx]] += delta
            v[used_idx] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = int(way[j0])
            p[j0] = p[j1]
            j0 = j1
    cols = [0] * n
    for j in range(1, m + 1):
        if p[j]:
            cols[p[j] - 1] = j - 1
    return cols


def assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """(row, col) pairs: the most pairs whose cost is at most max_cost, and of those matchings the cheapest.

    Pairs above max_cost are treated as forbidden before solving (priced so no allowed pair is traded for them);
    groups of rows and columns that share no allowed pair are solved apart.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.size == 0:
        return []
    allowed = np.isfinite(cost) & (cost <= max_cost)
    if not allowed.any():
        return []
    pairs: list[tuple[int, int]] = []
    for rows, cols in _components(allowed):
        if len(rows) == 1 and len(cols) == 1:
            pairs.append((rows[0], cols[0]))
            continue
        sub, ok = cost[np.ix_(rows, cols)], allowed[np.ix_(rows, cols)]
        pairs += [(rows[r], cols[c]) for r, c in _solve_allowed(sub, ok)]
    return sorted(pairs)


def _solve_allowed(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    big = float(np.abs(cost[allowed]).sum()) + 1.0 + float(np.abs(cost[allowed]).max()) * (min(cost.shape) + 1)
    work = np.where(allowed, cost, big)
    transposed = work.shape[0] > work.shape[1]
    if transposed:
        work = work.T
    cols = _solve(work)
    pairs = [(c, r) if transposed else (r, c) for r, c in enumerate(cols)]
    return [(r, c) for r, c in pairs if allowed[r, c]]


def _components(allowed: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Rows and columns linked by allowed pairs, split into independent groups (solved apart: far cheaper)."""
    n, m = allowed.shape
    parent = list(range(n + m))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r, c in zip(*np.nonzero(allowed), strict=True):
        a, b = find(int(r)), find(n + int(c))
        if a != b:
            parent[a] = b
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for r in range(n):
        if allowed[r].any():
            groups.setdefault(find(r), ([], []))[0].append(r)
    for c in range(m):
        if allowed[:, c].any():
            groups.setdefault(find(n + c), ([], []))[1].append(c)
    return list(groups.values())
