"""The fleet page's shared snapshot: built once per live tick, then every browser's table and summary read from it.

At 10,000 devices no request reads the registry: a page is a slice of the snapshot's rows, already sorted by
severity (misbehaving, offline, stale, unknown, stopped, updating, then healthy), and the summary (counts by
status, version, group, cohort and convergence, plus a bounded trend of the status counts) is computed once and
handed to every client. Pure: the live hub builds it from the rows it already read.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dashboards.web.ports import DeviceRow

# Lower is worse: the order the fleet page lists devices in by default.
CONDITIONS = ("misbehaving", "offline", "stale", "unknown", "stopped", "updating", "ok")
_RANK = {c: i for i, c in enumerate(CONDITIONS)}
TREND_SERIES = ("online", "stale", "offline", "stopped", "unknown", "misbehaving", "updating")
TREND_STEP_MS = 5_000  # one kept point per 5 s: TREND_POINTS of them cover an hour
TREND_POINTS = 720
SORT_KEYS = frozenset({"severity", "device_id", "status", "groups", "cohort", "model_version", "desired_version",
                       "variant", "backend", "fps", "e2e_ms_p95", "cpu_pct", "temp_c", "last_seen_ms", "refused",
                       "objects_per_min", "follow"})
StatusFilter = Literal["online", "stopped", "offline", "stale", "unknown", "misbehaving", "updating"]


def condition(row: DeviceRow) -> str:
    """What an operator should know first about a device, worst first (see CONDITIONS)."""
    if row.refused > 0 or row.shed > 0:
        return "misbehaving"
    if row.status != "online":
        return row.status
    if row.desired_version is not None and row.desired_version != row.model_version:
        return "updating"
    return "ok"


def convergence(row: DeviceRow) -> str:
    """converged (serves what it should), updating (desired differs from installed), or unmanaged (no desired)."""
    if row.desired_version is None:
        return "unmanaged"
    return "converged" if row.desired_version == row.model_version else "updating"


def version_key(row: DeviceRow) -> str:
    """The served version as the summary counts it."""
    return f"{row.model_name or '-'} v{row.model_version}" if row.model_version else "none"


@dataclass
class Trend:
    """Status counts over time, one point per TREND_STEP_MS (the latest point follows every tick), bounded."""

    step_ms: int = TREND_STEP_MS
    points: deque[tuple[int, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))

    def add(self, ts_ms: int, counts: dict[str, int]) -> None:
        """Record the counts of one tick: the current step's point follows the ticks, a new step adds a point."""
        if self.points and self.points[-1][0] // self.step_ms == ts_ms // self.step_ms:
            self.points[-1] = (ts_ms, counts)
        else:
            self.points.append((ts_ms, counts))

    def columns(self) -> dict[str, list[int]]:
        """uPlot's shape: ts (Unix s) and one list per series."""
        out: dict[str, list[int]] = {"ts": [t // 1000 for t, _ in self.points]}
        for s in TREND_SERIES:
            out[s] = [c.get(s, 0) for _, c in self.points]
        return out


def trend_counts(rows: Iterable[DeviceRow]) -> dict[str, int]:
    """One trend point: devices per status, plus misbehaving and updating ones."""
    out: Counter[str] = Counter()
    for r in rows:
        out[r.status] += 1
        c = condition(r)
        if c in ("misbehaving", "updating"):
            out[c] += 1
    return dict(out)


def summary_counts(rows: Sequence[DeviceRow]) -> dict[str, dict[str, int]]:
    """Devices by status, condition, served version, group, cohort and convergence."""
    groups: Counter[str] = Counter()
    for r in rows:
        groups.update(r.groups or ["(none)"])
    return {
        "status": dict(Counter(r.status for r in rows)),
        "condition": dict(Counter(condition(r) for r in rows)),
        "version": dict(Counter(version_key(r) for r in rows)),
        "group": dict(groups),
        "cohort": dict(Counter(r.cohort or "none" for r in rows)),
        "convergence": dict(Counter(convergence(r) for r in rows)),
    }


def _sort_value(row: DeviceRow, key: str) -> Any:
    if key == "groups":
        return ",".join(row.groups)
    if key == "refused":
        return row.refused + row.shed
    return getattr(row, key)


class FleetSnapshot:
    """The rows of one tick, in severity order, with their JSON and the summary every client shares."""

    def __init__(self, rows: Sequence[DeviceRow], generated_ms: int, trend: Trend | None = None,
                 dumped: dict[str, dict[str, Any]] | None = None) -> None:
        self.generated_ms = generated_ms
        self.rows = sorted(rows, key=lambda r: (_RANK[condition(r)], r.device_id))
        self._json = dumped if dumped is not None else {}
        self.counts = summary_counts(self.rows)
        # Copied now, on the thread that adds to the trend, so a request never iterates a deque being appended to.
        self.trend = trend.columns() if trend is not None else {"ts": []}
        self.trend_step_s = (trend.step_ms if trend is not None else TREND_STEP_MS) / 1000

    def summary(self) -> dict[str, Any]:
        """Counts and the trend, as /api/fleet/summary answers."""
        return {"generated_ms": self.generated_ms, "total": len(self.rows), "counts": self.counts,
                "trend": self.trend, "trend_step_s": self.trend_step_s}

    def row_json(self, row: DeviceRow) -> dict[str, Any]:
        """The row as JSON, plus its condition (dumped once per tick, whoever asks)."""
        found = self._json.get(row.device_id)
        if found is None:
            found = row.model_dump(mode="json")
            self._json[row.device_id] = found
        return found | {"condition": condition(row)}

    def page(self, offset: int, limit: int, sort: str = "severity", desc: bool = False, text: str = "",
             status: str | None = None, group: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(matching devices, one page of them as JSON) filtered by text, status or condition, and group."""
        rows: Iterable[DeviceRow] = self.rows
        if status:
            rows = (r for r in rows if r.status == status or condition(r) == status)
        if group:
            rows = (r for r in rows if group in r.groups)
        needle = text.strip().lower()
        if needle:
            rows = (r for r in rows if needle in " ".join(
                [r.device_id, " ".join(r.groups), r.model_name or "", r.backend or "", r.variant or "", r.status,
                 r.cohort or ""]).lower())
        chosen = list(rows)
        if sort != "severity":
            present = [r for r in chosen if _sort_value(r, sort) is not None]
            absent = [r for r in chosen if _sort_value(r, sort) is None]  # no figure: last, either way
            present.sort(key=lambda r: r.device_id)
            present.sort(key=lambda r: _sort_value(r, sort), reverse=desc)
            chosen = present + absent
        elif desc:
            chosen.reverse()
        return len(chosen), [self.row_json(r) for r in chosen[offset:offset + limit]]
