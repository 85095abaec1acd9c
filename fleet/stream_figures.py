"""Each device's latest per-stream figures (a multi-stream agent's telemetry `streams`), kept apart from the
device record so the registry's hot write path stays as it is.

Devices are untrusted: a report is validated against the contract (shared.payloads, shared.streams' table) before
anything is kept; a device keeps at most MAX_STREAMS_PER_DEVICE streams (by name order) and the streams beyond are
counted, not stored. Each report replaces the device's streams whole (a stream the agent removed disappears); a
replayed or older report (by device clock) changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import JSON, BigInteger, Column, Engine, MetaData, String, Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from fleet.db import sanitize
from fleet.db.upsert import insert_absent
from shared.payloads import TelemetryPayload
from shared.streams import STREAM_BY_NAME

log = logging.getLogger(__name__)

# Streams the fleet keeps per device (the contract lets a report carry up to shared.streams.MAX_STREAMS).
MAX_STREAMS_PER_DEVICE = 32

_metadata = MetaData()
device_streams = Table(
    "device_streams",
    _metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("streams", JSON, nullable=False, default=dict),
    # Streams of the last report beyond MAX_STREAMS_PER_DEVICE, left out.
    Column("dropped", BigInteger, nullable=False, default=0),
)

Message = tuple[str, bytes, bool, int]  # topic, payload, retained, received_ms (as fleet.ingest batches them)


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


def read_streams(device_id: str, payload: bytes, received_ms: int) -> DeviceStreams | None:
    """A telemetry payload's per-stream figures, validated by the contract; None when it carries none, names
    another device, is replayed from an outbox, or is refused (ingest books the refusal on the device)."""
    if b'"streams"' not in payload:
        return None
    try:
        doc = orjson.loads(payload)
        if not isinstance(doc, dict) or not isinstance(doc.get("streams"), dict):
            return None
        tel = TelemetryPayload.model_validate(doc)
    except (orjson.JSONDecodeError, ValidationError, ValueError, TypeError, RecursionError):
        return None
    if tel.device_id != device_id or tel.replayed or tel.streams is None:
        return None
    kept, dropped = bounded(tel.streams)
    return DeviceStreams(device_id, tel.ts, received_ms, kept, dropped)


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
    """The device_streams table of one fleet (created on first use; other tables are not touched)."""

    _created: set[str] = set()

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet
        key = str(engine.url)
        if key not in StreamFigures._created:
            device_streams.create(engine, checkfirst=True)
            StreamFigures._created.add(key)

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


def keep_from_batch(engine: Engine, fleet: str, batch: Iterable[Message], device_of: Callable[[str], Any],
                    skip: Collection[str] = ()) -> None:
    """Ingest's one call: the batch's telemetry carrying `streams`, validated and stored (a database refusal is
    logged; the registry and history writes already committed). device_of(topic): its route (device_id, kind) or
    None; devices in skip (left out of the registry by its cap) are not stored."""
    readings: list[DeviceStreams] = []
    for topic, payload, _retained, received in batch:
        r = device_of(topic)
        if r is None or r.kind != "telemetry" or r.device_id in skip:
            continue
        reading = read_streams(r.device_id, payload, received)
        if reading is not None:
            readings.append(reading)
    if not readings:
        return
    try:
        StreamFigures(engine, fleet).keep(readings)
    except (SQLAlchemyError, ValueError, TypeError) as exc:  # the streams wait for the device's next report
        log.warning("per-stream figures of %d device(s) not stored: %s", len(readings), str(exc).splitlines()[0])
