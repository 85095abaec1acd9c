"""Which devices of a group run the new version at a stage: deterministic, and the set only grows."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable


def rank_key(rollout_id: str, device_id: str) -> str:
    """A device's place in a rollout's order: the same for every worker, restart and join time."""
    return hashlib.sha256(f"{rollout_id}:{device_id}".encode()).hexdigest()


def target_count(group_size: int, percent: float) -> int:
    """Devices a stage takes from a group: at least one of a non-empty group, all of it at 100 %."""
    if group_size <= 0:
        return 0
    return min(group_size, max(1, math.ceil(group_size * percent / 100 - 1e-9)))


def select(
    rollout_id: str,
    eligible: Iterable[str],
    group_size: int,
    percent: float,
    already: Collection[str],
) -> list[str]:
    """Devices to add now so the stage holds its share of the group; the ones already in stay in.

    `eligible` are the group's devices that may be added (reachable, not yet assigned); they are taken in the
    rollout's hash order, so a device that joins the group mid-rollout is added exactly when its rank says so.
    """
    missing = target_count(group_size, percent) - len(already)
    if missing <= 0:
        return []
    pool = sorted((d for d in set(eligible) if d not in already), key=lambda d: rank_key(rollout_id, d))
    return sorted(pool[:missing])
