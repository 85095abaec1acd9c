"""Device selection is deterministic, only grows, and places a device that joins mid-rollout by the same rule."""

from __future__ import annotations

from fleet.rollout.selection import select, target_count


def _grow(rollout: str, devices: list[str], percents: list[float]) -> list[list[str]]:
    chosen: list[str] = []
    stages = []
    for p in percents:
        chosen = sorted([*chosen, *select(rollout, devices, len(devices), p, chosen)])
        stages.append(chosen)
    return stages


def test_counts_per_share_and_at_least_one() -> None:
    assert [target_count(40, p) for p in (10, 50, 100)] == [4, 20, 40]
    assert target_count(3, 10) == 1 and target_count(0, 50) == 0 and target_count(7, 50) == 4


def test_same_rollout_same_devices_and_sets_only_grow() -> None:
    fleet = [f"cam-{i:02d}" for i in range(40)]
    ten, fifty, everyone = _grow("r1", fleet, [10, 50, 100])
    assert len(ten) == 4 and len(fifty) == 20 and everyone == fleet
    assert set(ten) <= set(fifty)
    assert _grow("r1", list(reversed(fleet)), [10, 50, 100])[0] == ten
    assert _grow("r2", fleet, [10])[0] != ten  # another rollout draws other canaries


def test_device_joining_mid_stage_is_added_only_when_its_rank_is_due() -> None:
    fleet = [f"cam-{i:02d}" for i in range(10)]
    canary = select("r1", fleet, 10, 10, [])
    assert len(canary) == 1
    # One more device joins: 11 devices at 10 % need 2, so exactly one device (by rank) is added; none removed.
    joined = [*fleet, "cam-new"]
    added = select("r1", [d for d in joined if d not in canary], 11, 10, canary)
    assert len(added) == 1 and added[0] not in canary
    full = select("r1", [d for d in fleet if d not in canary], 10, 100, canary)
    assert sorted([*canary, *full]) == fleet
