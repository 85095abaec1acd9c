"""Each device's latest per-stream figures (a multi-stream agent's telemetry `streams`), kept apart from the
device record so the registry's hot write path stays as it is.

Devices are untrusted: ingest validates a report against the contract (shared.payloads, shared.streams' table) in
the one parse it makes, and only an accepted report's streams are kept; a device keeps at most
MAX_STREAMS_PER_DEVICE streams (by name order) and the streams beyond are counted, not stored. Each report replaces
the device's streams whole (a stream the agent removed disappears); a replayed or older report (by device clock)
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from fleet.db import sanitize
from fleet.db.schema import device_streams
from fleet.db.upsert import insert_absent
from shared.streams import STREAM_BY_NAME

log = logging.getLogger(__name__)

# Streams the fleet keeps per device (the contract lets a report carry up to shared.streams.MAX_STREAMS).
MAX_STREAMS_PER_DEVICE = 32

@dataclass(frozen=True)
class DeviceStreams:
    """One device's latest per-stream figures: stream name -> figure -> value, and streams left out."""

    device_id: str
    ts_ms: int
    received_ms: int
    streams: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped: int = 0

    def as_json(self) -> dict[str, Any]:
        """What the CLI and the web API show."""
        return {"ts_ms": self.ts_ms, "received_ms": self.received_ms, "streams": self.streams,
                "dropped": self.dropped}


def bounded(streams: Mapping[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], int]:
    """The first MAX_STREAMS_PER_DEVICE streams by name, and how many were left out."""
    names = sorted(streams)
    kept = {name: dict(streams[name]) for name in names[:MAX_STREAMS_PER_DEVICE]}
    return kept, max(0, len(names) - MAX_STREAMS_PER_DEVICE)


def _clean(raw: object) -> dict[str, dict[str, float]]:
    """Stored figures as the table declares them; anything an older version stored unchecked is left out."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, figures in list(raw.items())[:MAX_STREAMS_PER_DEVICE]:
        if isinstance(name, str) and isinstance(figures, dict):
            out[name] = {k: v for k, v in sanitize.figures(figures).items() if k in STREAM_BY_NAME}
    return out


class StreamFigures:
    """The device_streams table of one fleet (part of the fleet schema: fleet.db.schema)."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def keep(self, readings: Iterable[DeviceStreams]) -> int:
        """Store each device's newest reading unless a newer one is stored; returns how many were stored."""
        newest: dict[str, DeviceStreams] = {}
        for r in readings:
            if r.device_id not in newest or r.ts_ms >= newest[r.device_id].ts_ms:
                newest[r.device_id] = r
        stored = 0
        t = device_streams.c
        with self._engine.begin() as conn:
            for r in newest.values():
                values = {"ts_ms": r.ts_ms, "received_ms": r.received_ms, "streams": r.streams, "dropped": r.dropped}
                done = conn.execute(update(device_streams).where(
                    t.fleet == self.fleet, t.device_id == r.device_id, t.ts_ms <= r.ts_ms).values(**values))
                if done.rowcount or insert_absent(conn, device_streams, {"fleet": self.fleet,
                                                                         "device_id": r.device_id, **values},
                                                  ["fleet", "device_id"]):
                    stored += 1
        return stored

    def get(self, device_id: str) -> DeviceStreams | None:
        """One device's latest streams, or None when it never reported any."""
        return self.all([device_id]).get(device_id)

    def all(self, device_ids: Iterable[str] | None = None) -> dict[str, DeviceStreams]:
        """Every device's latest streams (or those of device_ids)."""
        t = device_streams.c
        q = select(t.device_id, t.ts_ms, t.received_ms, t.streams, t.dropped).where(t.fleet == self.fleet)
        if device_ids is not None:
            q = q.where(t.device_id.in_(list(device_ids)))
        with self._engine.connect() as conn:
            return {r.device_id: DeviceStreams(r.device_id, sanitize.int64(r.ts_ms) or 0,
                                               sanitize.int64(r.received_ms) or 0, _clean(r.streams),
                                               sanitize.int64(r.dropped) or 0) for r in conn.execute(q)}

    def forget(self, device_id: str) -> None:
        """Drop a removed device's streams."""
        with self._engine.begin() as conn:
            conn.execute(delete(device_streams).where(device_streams.c.fleet == self.fleet,
                                                      device_streams.c.device_id == device_id))


def keep_streams(engine: Engine, fleet: str, per_device: Mapping[str, Sequence[Any]],
                 skip: Collection[str] = ()) -> None:
    """Ingest's one call, after its registry and history writes: each device's accepted live reports that carry
    `streams` (ingest's items: .sample.streams, validated by the contract; .refused when the database refused it)
    stored; devices in skip (left out of the registry by its cap) are not. A database refusal is logged: the
    streams wait for the device's next report."""
    readings: list[DeviceStreams] = []
    for device, items in per_device.items():
        if device in skip:
            continue
        for item in items:
            sample = item.sample
            if sample is None or item.refused or sample.streams is None:
                continue
            kept, dropped = bounded(sample.streams)
            readings.append(DeviceStreams(device, sample.ts_ms, item.received_ms, kept, dropped))
    if not readings:
        return
    try:
        StreamFigures(engine, fleet).keep(readings)
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        log.warning("per-stream figures of %d device(s) not stored: %s", len(readings), str(exc).splitlines()[0])
