"""Telemetry storage: a rolling window of raw samples per device, and a downsampled history for dashboards.

Retention and history buckets go by the fleet's receive time (`received_ms`): a device's clock is data, kept in
`ts_ms`, and a device dating its samples ten years ahead cannot keep them past the retention.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Text, cast, delete, func, select

from fleet.db import sanitize
from fleet.db.batch_write import insert_history, insert_samples
from fleet.db.schema import telemetry_history, telemetry_samples
from fleet.registry import TelemetrySample

T = TypeVar("T")
# Samples the history pass holds in memory at once while it reads.
HISTORY_READ_ROWS = 2000


def bucket_of(ts_ms: int, bucket_ms: int) -> int:
    """Start of the history bucket holding ts_ms."""
    return ts_ms - ts_ms % bucket_ms


def downsample(samples: Iterable[tuple[str, TelemetrySample]], bucket_ms: int) -> dict[tuple[str, int], Any]:
    """Mean of each figure per (device, bucket), with the sample count and summed class counts."""
    return _downsample((device, bucket_of(s.ts_ms, bucket_ms), s.figures, s.class_counts) for device, s in samples)


class _Slot:
    """Running sums of one (device, bucket): while every sample names the same figures in the same order (one
    agent's reports) one list of sums aligned with the names, else a total and count per name. Only the sums are
    kept, not the samples: the history pass of 10,000 devices at 1 Hz reads 100,000 samples a bucket."""

    __slots__ = ("counts", "loose", "n", "names", "sums")

    def __init__(self, figures: dict[str, float]) -> None:
        self.names: tuple[str, ...] | None = tuple(figures)
        self.sums = [0.0 + v for v in figures.values()]
        self.loose: dict[str, list[float]] = {}
        self.n = 1
        self.counts: dict[str, int] = {}

    def add(self, figures: dict[str, float]) -> None:
        self.n += 1
        if self.names is not None:
            if tuple(figures) == self.names:
                self.sums = [a + b for a, b in zip(self.sums, figures.values(), strict=True)]
                return
            self.loose = {name: [total, self.n - 1] for name, total in zip(self.names, self.sums, strict=True)}
            self.names = None
        for name, v in figures.items():
            acc = self.loose.get(name)
            if acc is None:
                self.loose[name] = [0.0 + v, 1]
            else:
                acc[0] += v
                acc[1] += 1

    def means(self) -> dict[str, float]:
        if self.names is not None:
            return dict(sorted((name, total / self.n) for name, total in zip(self.names, self.sums, strict=True)))
        return {name: total / n for name, (total, n) in sorted(self.loose.items())}


def _downsample(rows: Iterable[tuple[str, int, dict[str, float], dict[str, int]]]) -> dict[tuple[str, int], Any]:
    """downsample of (device, bucket, figures, class counts) rows, each figure summed in arrival order."""
    slots: dict[tuple[str, int], _Slot] = {}
    for device, bucket, figures, class_counts in rows:
        slot = slots.get((device, bucket))
        if slot is None:
            slot = slots[(device, bucket)] = _Slot(figures)
        else:
            slot.add(figures)
        counts = slot.counts
        for label, c in class_counts.items():
            counts[label] = counts.get(label, 0) + c
    return {key: {"samples": slot.n, "figures": slot.means(), "class_counts": slot.counts}
            for key, slot in slots.items()}


def _stored(v: Any, written: Callable[[dict[Any, Any]], bool], clean: Callable[[Any], dict[str, T]]) -> dict[str, T]:
    """A stored JSON column (text, or what the driver decoded) read by orjson; returned as it is when `written`
    says it is what ingest writes, else made safe by `clean` (a sanitize reader)."""
    if isinstance(v, str | bytes):
        try:
            v = orjson.loads(v)
        except orjson.JSONDecodeError:
            try:
                v = json.loads(v)  # NaN or Infinity, which an older version could write
            except ValueError:
                return {}
    if type(v) is dict and written(v):
        return v
    return clean(v)


def _finite_floats(v: dict[Any, Any]) -> bool:
    """Figures as ingest writes them: every value a finite float."""
    return all(type(x) is float for x in v.values()) and math.isfinite(sum(v.values(), 0.0))


def _counts(v: dict[Any, Any]) -> bool:
    """Class counts as ingest writes them: every value an integer within 0..INT64_MAX."""
    return all(type(x) is int and 0 <= x <= sanitize.INT64_MAX for x in v.values())


def _json(value: Any) -> str:
    """JSON text as SQLAlchemy's JSON type would store it, by orjson: json.dumps only where they differ (NaN,
    which orjson writes as null, integer keys, integers beyond 64 bits)."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        return json.dumps(value)
    return json.dumps(value) if b"null" in out else out.decode()


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
            insert_samples(conn, rows)
            return
        with self._engine.begin() as own:
            insert_samples(own, rows)

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
                # JSON as text, read by orjson: the driver's and SQLAlchemy's json.loads cost more than the rest.
                # Streamed (a server-side cursor on PostgreSQL): a pass never holds every sample of its buckets.
                rows = conn.execute(
                    select(t.device_id, t.received_ms, cast(t.figures, Text), cast(t.class_counts, Text))
                    .where(t.fleet == self.fleet, t.received_ms >= changed[0], t.received_ms < changed[-1] + bucket_ms)
                    .execution_options(yield_per=HISTORY_READ_ROWS)
                )
                buckets = _downsample(
                    (dev, b, _stored(figures, _finite_floats, sanitize.figures),
                     _stored(counts, _counts, sanitize.counts))
                    for dev, received, figures, counts in rows
                    if (b := bucket_of(int(received), bucket_ms)) in wanted
                )
            h = telemetry_history.c
            conn.execute(delete(telemetry_history).where(h.fleet == self.fleet, h.bucket_ms.in_(changed + emptied)))
            insert_history(conn, [
                (self.fleet, dev, b, v["samples"],
                 _json({**v["figures"], **({"class_counts": v["class_counts"]} if v["class_counts"] else {})}))
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
