"""Telemetry storage: a rolling window of raw samples per device, and a downsampled history for dashboards.

Retention and history buckets go by the fleet's receive time (`received_ms`): a device's clock is data, kept in
`ts_ms`, and a device dating its samples ten years ahead cannot keep them past the retention.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select

from fleet.db import sanitize
from fleet.db.schema import telemetry_history, telemetry_samples
from fleet.registry import TelemetrySample


def bucket_of(ts_ms: int, bucket_ms: int) -> int:
    """Start of the history bucket holding ts_ms."""
    return ts_ms - ts_ms % bucket_ms


def downsample(samples: Iterable[tuple[str, TelemetrySample]], bucket_ms: int) -> dict[tuple[str, int], Any]:
    """Mean of each figure per (device, bucket), with the sample count and summed class counts."""
    acc: dict[tuple[str, int], dict[str, Any]] = {}
    for device, s in samples:
        slot = acc.setdefault((device, bucket_of(s.ts_ms, bucket_ms)), {"n": 0, "sums": {}, "counts": {}})
        slot["n"] += 1
        for k, v in s.figures.items():
            total, n = slot["sums"].get(k, (0.0, 0))
            slot["sums"][k] = (total + v, n + 1)
        for label, c in s.class_counts.items():
            slot["counts"][label] = slot["counts"].get(label, 0) + c
    return {
        key: {"samples": slot["n"], "figures": {k: t / n for k, (t, n) in sorted(slot["sums"].items())},
              "class_counts": slot["counts"]}
        for key, slot in acc.items()
    }


_SAMPLE_COLUMNS = ("fleet", "device_id", "ts_ms", "received_ms", "boot_id", "seq", "figures", "class_counts")


def _json(value: Any) -> str:
    """JSON text as SQLAlchemy's JSON type would store it, by orjson: json.dumps only where they differ (NaN,
    which orjson writes as null, integer keys, integers beyond 64 bits)."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        return json.dumps(value)
    return json.dumps(value) if b"null" in out else out.decode()


def _insert_samples_sql(dialect: str) -> str:
    """One INSERT for executemany on the driver: no per-value processing by SQLAlchemy (JSON is written here)."""
    cols = ", ".join(_SAMPLE_COLUMNS)
    if dialect == "postgresql":
        marks = ", ".join("CAST(%s AS JSON)" if c in ("figures", "class_counts") else "%s" for c in _SAMPLE_COLUMNS)
    else:
        marks = ", ".join("?" for _ in _SAMPLE_COLUMNS)
    return f"INSERT INTO {telemetry_samples.name} ({cols}) VALUES ({marks})"


class TelemetryRepository:
    """Samples and history of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet
        # (bucket length, bucket start) -> (samples, newest sample id) as of this process's last history pass.
        self._marks: dict[tuple[int, int], tuple[int, int]] = {}

    def add(self, batch: Sequence[tuple[str, TelemetrySample, int]], conn: Connection | None = None) -> None:
        """Store (device id, sample, received ms) rows in one transaction (`conn`'s, when given)."""
        if not batch:
            return
        rows = [(self.fleet, dev, s.ts_ms, received, s.boot_id, s.seq, _json(s.figures), _json(s.class_counts))
                for dev, s, received in batch]
        if conn is not None:
            conn.exec_driver_sql(_insert_samples_sql(conn.dialect.name), rows)
            return
        with self._engine.begin() as own:
            own.exec_driver_sql(_insert_samples_sql(own.dialect.name), rows)

    def window(self, device_id: str, since_ms: int, until_ms: int) -> list[TelemetrySample]:
        """Samples of one device with since_ms <= ts < until_ms, oldest first."""
        t = telemetry_samples.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t.ts_ms, t.figures, t.class_counts, t.boot_id, t.seq)
                .where(t.fleet == self.fleet, t.device_id == device_id, t.ts_ms >= since_ms, t.ts_ms < until_ms)
                .order_by(t.ts_ms, t.seq)
            ).all()
        return [TelemetrySample(sanitize.int64(r.ts_ms) or 0, sanitize.figures(r.figures),
                                sanitize.counts(r.class_counts), str(r.boot_id), sanitize.int64(r.seq) or 0)
                for r in rows]

    def rebuild_history(self, since_ms: int, until_ms: int, bucket_ms: int) -> int:
        """Recompute the history buckets that start in [since_ms, until_ms) from the raw samples received in that
        span (fleet clock); returns the history rows written.

        Recomputing a recent span on each pass (rather than appending) takes in every sample received since. A
        bucket whose samples (count and newest id) are as at the last pass is left as it is: only buckets that
        took in samples are read again, so a pass costs what arrived since, not the whole span.
        """
        since_ms, until_ms = bucket_of(since_ms, bucket_ms), bucket_of(until_ms, bucket_ms)
        t = telemetry_samples.c
        in_span = (t.fleet == self.fleet, t.received_ms >= since_ms, t.received_ms < until_ms)
        bucket = t.received_ms - t.received_ms % bucket_ms
        with self._engine.begin() as conn:
            marks = {(bucket_ms, int(b)): (int(n), int(m)) for b, n, m in conn.execute(
                select(bucket, func.count(), func.max(t.id)).where(*in_span).group_by(bucket))}
            known = {k for k in self._marks if k[0] == bucket_ms and since_ms <= k[1] < until_ms}
            changed = sorted(k[1] for k, mark in marks.items() if self._marks.get(k) != mark)
            emptied = sorted(k[1] for k in known - marks.keys())
            if not changed and not emptied:
                return 0
            buckets: dict[tuple[str, int], Any] = {}
            if changed:
                wanted = set(changed)
                rows = conn.execute(
                    select(t.device_id, t.received_ms, t.figures, t.class_counts)
                    .where(t.fleet == self.fleet, t.received_ms >= changed[0], t.received_ms < changed[-1] + bucket_ms)
                ).all()
                buckets = downsample(
                    ((r.device_id, TelemetrySample(int(r.received_ms), sanitize.figures(r.figures),
                                                   sanitize.counts(r.class_counts)))
                     for r in rows if bucket_of(int(r.received_ms), bucket_ms) in wanted),
                    bucket_ms,
                )
            h = telemetry_history.c
            conn.execute(delete(telemetry_history).where(h.fleet == self.fleet, h.bucket_ms.in_(changed + emptied)))
            if buckets:
                conn.execute(insert(telemetry_history), [
                    {"fleet": self.fleet, "device_id": dev, "bucket_ms": b, "samples": v["samples"],
                     "figures": {**v["figures"], **({"class_counts": v["class_counts"]} if v["class_counts"] else {})}}
                    for (dev, b), v in buckets.items()
                ])
        for k in [k for k in self._marks if k in known or k[1] < since_ms]:
            del self._marks[k]  # redone now, or out of the span for good
        self._marks.update(marks)
        return len(buckets)

    def history(self, device_id: str, since_ms: int, until_ms: int) -> list[tuple[int, int, dict[str, Any]]]:
        """(bucket start, samples, mean figures) of one device, oldest first."""
        h = telemetry_history.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(h.bucket_ms, h.samples, h.figures)
                .where(h.fleet == self.fleet, h.device_id == device_id, h.bucket_ms >= since_ms,
                       h.bucket_ms < until_ms)
                .order_by(h.bucket_ms)
            ).all()
        out = []
        for r in rows:
            figures = sanitize.json_tree(r.figures)
            out.append((int(r.bucket_ms), sanitize.int64(r.samples) or 0, figures if isinstance(figures, dict) else {}))
        return out

    def prune(self, samples_before_ms: int, history_before_ms: int) -> tuple[int, int]:
        """Drop raw samples received and history buckets older than the retention (fleet clock, whatever the
        device's clock said); returns (samples, buckets) removed."""
        with self._engine.begin() as conn:
            s = conn.execute(delete(telemetry_samples).where(
                telemetry_samples.c.fleet == self.fleet, telemetry_samples.c.received_ms < samples_before_ms
            )).rowcount
            h = conn.execute(delete(telemetry_history).where(
                telemetry_history.c.fleet == self.fleet, telemetry_history.c.bucket_ms < history_before_ms
            )).rowcount
        return int(s), int(h)

    def remove_device(self, device_id: str, conn: Connection) -> int:
        """Delete every sample and history bucket of one device (in the caller's transaction); returns samples."""
        n = conn.execute(delete(telemetry_samples).where(telemetry_samples.c.fleet == self.fleet,
                                                         telemetry_samples.c.device_id == device_id)).rowcount
        conn.execute(delete(telemetry_history).where(telemetry_history.c.fleet == self.fleet,
                                                     telemetry_history.c.device_id == device_id))
        return int(n)

    def counts(self) -> tuple[int, int]:
        """(raw samples, history buckets) stored for the fleet."""
        from sqlalchemy import func

        with self._engine.connect() as conn:
            s = conn.execute(select(func.count()).select_from(telemetry_samples)
                             .where(telemetry_samples.c.fleet == self.fleet)).scalar_one()
            h = conn.execute(select(func.count()).select_from(telemetry_history)
                             .where(telemetry_history.c.fleet == self.fleet)).scalar_one()
        return int(s), int(h)
