"""Zone occupancy per tracked object: entry after `inertia` frames inside, exit after as many outside, loitering.

An object is inside a zone while its box's bottom-centre (where it stands) lies in the polygon, edges and vertices
included, and it passes the zone's label, score and area filters. Times are frame times, so the clock is whatever
the caller passes (tests inject it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.detection.config import ZoneConfig
from edge.detection.geometry import area, bottom_centre, point_in_polygon
from edge.detection.objects import Box


@dataclass
class _Presence:
    inside: bool = False  # counted as in the zone
    streak: int = 0  # consecutive frames observed on the other side of `inside`
    streak_since_s: float = 0.0  # frame time the streak began
    since_s: float = 0.0  # frame time the object was first inside in the run that counts


@dataclass(frozen=True)
class ZoneStatus:
    """Where an object stands after a frame."""

    current: tuple[str, ...]
    loitering: tuple[str, ...]


@dataclass
class _ObjectZones:
    presence: dict[str, _Presence] = field(default_factory=dict)


class ZoneTracker:
    """Per-object zone membership with hysteresis; pure (no clock of its own), one instance per stream."""

    def __init__(self, zones: dict[str, ZoneConfig]) -> None:
        self.zones = zones
        self._objects: dict[int, _ObjectZones] = {}

    def observe(self, object_id: int, label: str, score: float, box: Box, t_s: float) -> ZoneStatus:
        """Update an object seen in a frame at time t_s (seconds); returns its zones and where it loiters."""
        state = self._objects.setdefault(object_id, _ObjectZones())
        current: list[str] = []
        loitering: list[str] = []
        foot = bottom_centre(box)
        size = area(box)
        for name, zone in self.zones.items():
            observed = (
                (not zone.objects or label in zone.objects)
                and score >= zone.min_score
                and zone.min_area <= size <= zone.max_area
                and point_in_polygon(foot, zone.coordinates)
            )
            p = state.presence.setdefault(name, _Presence())
            if observed == p.inside:
                p.streak = 0
            else:
                if p.streak == 0:
                    p.streak_since_s = t_s
                p.streak += 1
                if p.streak >= zone.inertia:
                    p.inside, p.streak = observed, 0
                    p.since_s = p.streak_since_s
            if p.inside:
                current.append(name)
                if zone.loitering_time_s > 0 and t_s - p.since_s > zone.loitering_time_s:
                    loitering.append(name)
        return ZoneStatus(tuple(current), tuple(loitering))

    def forget(self, object_id: int) -> None:
        """Drop an object given up on."""
        self._objects.pop(object_id, None)
