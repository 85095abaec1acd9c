"""Per-zone object counts for telemetry: how many followed objects stand in each zone, in total and per label."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class InZones(Protocol):
    """A followed object: its label and the zones it stands in."""

    @property
    def label(self) -> str: ...

    @property
    def current_zones(self) -> tuple[str, ...]: ...


def zone_counts(objects: Iterable[InZones], zones: Iterable[str]) -> tuple[dict[str, int], dict[str, int]]:
    """({zone: objects}, {zone/label: objects}); every configured zone appears, 0 when empty (an occupancy reads 0)."""
    totals = dict.fromkeys(zones, 0)
    per_label: dict[str, int] = {}
    for obj in objects:
        for zone in obj.current_zones:
            if zone not in totals:
                continue
            totals[zone] += 1
            key = f"{zone}/{obj.label}"
            per_label[key] = per_label.get(key, 0) + 1
    return totals, per_label
