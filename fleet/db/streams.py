"""Each device's latest per-stream figures (a multi-stream agent's telemetry `streams`), kept apart from the
device record so the registry's hot write path stays as it is.

Devices are untrusted: ingest validates a report against the contract (shared.payloads, shared.streams' table) in
the one parse it makes, and only an accepted live report's streams are kept; a device keeps at most
MAX_STREAMS_PER_DEVICE streams (by name order) and the streams beyond are counted, not stored. Each report replaces
the device's streams whole (a stream the agent removed disappears); a replayed or older report (by device clock)
changes nothing. Ingest writes a batch's streams in one upsert, in the transaction of the batch's samples (on its
fallback path, device by device apart from them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, select

from fleet.db import sanitize
from fleet.db.batch_write import upsert_streams
from fleet.db.schema import device_streams
from shared.streams import STREAM_BY_NAME

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

    @classmethod
    def reported(cls, device_id: str, ts_ms: int, received_ms: int,
                 streams: Mapping[str, dict[str, float]]) -> DeviceStreams:
        """A report's streams as kept: the first MAX_STREAMS_PER_DEVICE by name, the rest counted in `dropped`."""
        names = sorted(streams)
        kept = {name: dict(streams[name]) for name in names[:MAX_STREAMS_PER_DEVICE]}
        return cls(device_id, ts_ms, received_ms, kept, max(0, len(names) - MAX_STREAMS_PER_DEVICE))

    def as_json(self) -> dict[str, Any]:
        """What the CLI and the web API show."""
        return {"ts_ms": self.ts_ms, "received_ms": self.received_ms, "streams": self.streams,
                "dropped": self.dropped}


def _clean(raw: object) -> dict[str, dict[str, float]]:
    """Stored figures as the table declares them; anything an older version stored unchecked is left out."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, figures in list(raw.items())[:MAX_STREAMS_PER_DEVICE]:
        if isinstance(name, str) and isinstance(figures, dict):
            out[name] = {k: v for k, v in sanitize.figures(figures).items() if k in STREAM_BY_NAME}
    return out


def newest(readings: Iterable[DeviceStreams]) -> list[DeviceStreams]:
    """Each device's newest reading by device clock (the later one of a tie): one row per device per upsert."""
    out: dict[str, DeviceStreams] = {}
    for r in readings:
        if r.device_id not in out or r.ts_ms >= out[r.device_id].ts_ms:
            out[r.device_id] = r
    return list(out.values())


class StreamRepository:
    """The device_streams table of one fleet (part of the fleet schema: fleet.db.schema)."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def keep(self, readings: Iterable[DeviceStreams], conn: Connection) -> None:
        """Store each device's newest reading unless a newer one is stored, in one upsert in `conn`'s transaction."""
        # Figures are finite floats under string keys (validated at ingest): orjson writes them as json.dumps does.
        # In id order, so two workers' upserts lock shared rows in the same order (PostgreSQL) and cannot deadlock.
        rows = sorted((r.device_id, r.ts_ms, r.received_ms, orjson.dumps(r.streams).decode(), r.dropped)
                      for r in newest(readings))
        upsert_streams(conn, self.fleet, rows)

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

    def remove_device(self, device_id: str, conn: Connection) -> None:
        """Drop a removed device's streams (in the caller's transaction)."""
        conn.execute(delete(device_streams).where(device_streams.c.fleet == self.fleet,
                                                  device_streams.c.device_id == device_id))
