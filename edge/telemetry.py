"""Envelopes (one seq per boot across all topics) and telemetry reports built from the declared metric table."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from edge.errors import AgentError
from edge.link.base import Link
from edge.supervise import Health, spawn
from shared.metrics import BY_NAME
from shared.payloads import MAX_CLASS_COUNTS, MAX_ZONE_COUNTS, Envelope, TelemetryPayload
from shared.streams import STREAM_BY_NAME

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Envelope)
Source = Callable[[], Mapping[str, float]]
Sink = Callable[[Mapping[str, float]], None]
# The reporting thread's name in Health.
TELEMETRY = "telemetry"
# Counts figures left out because they failed their metric's check (declared in shared/metrics.py).
DROPPED = "telemetry_figures_dropped"


class EnvelopeFactory:
    """Stamps payloads with device, boot id, a per-boot monotonic seq and a ms timestamp; thread-safe."""

    def __init__(self, device_id: str, boot_id: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.device_id = device_id
        self.boot_id = boot_id or uuid.uuid4().hex
        self._clock = clock
        self._seq = 0
        self._lock = threading.Lock()

    def next(self) -> Envelope:
        """The next envelope; seq and ts are taken together so seq order is production order."""
        with self._lock:
            seq = self._seq
            self._seq += 1
            ts = int(self._clock() * 1000)
        return Envelope(device_id=self.device_id, boot_id=self.boot_id, seq=seq, ts=ts)

    def stamp(self, cls: type[E], **fields: Any) -> E:
        """A payload of type cls with a fresh envelope, e.g. stamp(ReplyPayload, id=..., ok=True, ...)."""
        return cls(**self.next().model_dump(), **fields)


class Telemetry:
    """Collects figures (own counters and gauges plus pluggable sources) into flat declared-metric reports."""

    def __init__(
        self,
        envelopes: EnvelopeFactory,
        sources: Iterable[Source] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.envelopes = envelopes
        self._sources = list(sources)
        self._clock = clock
        self._started = clock()
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._class_counts: Callable[[], dict[str, int]] | None = None
        self._zone_counts: Callable[[], dict[str, int] | None] | None = None
        self._stream_figures: Callable[[], Mapping[str, Mapping[str, float]]] | None = None
        self.dropped = 0

    def set_class_counts(self, source: Callable[[], dict[str, int]]) -> None:
        """Where the payload's class_counts come from (read after values(), so both cover one window)."""
        self._class_counts = source

    def set_zone_counts(self, source: Callable[[], dict[str, int] | None]) -> None:
        """Where the payload's zone_counts come from (objects per detection zone now)."""
        self._zone_counts = source

    def set_stream_figures(self, source: Callable[[], Mapping[str, Mapping[str, float]]]) -> None:
        """Where a multi-stream agent's per-stream figures come from (stream name -> shared.streams figures)."""
        self._stream_figures = source

    def add_source(self, source: Source) -> None:
        """A callable returning figures at report time (frame stats, link outbox, system stats, router)."""
        with self._lock:
            self._sources.append(source)

    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter declared in shared.metrics."""
        if BY_NAME.get(name) is None or BY_NAME[name].kind != "counter":
            raise ValueError(f"{name!r} is not a counter in shared/metrics.py")
        with self._lock:
            self._values[name] = self._values.get(name, 0.0) + n

    def set(self, name: str, value: float) -> None:
        """Set a figure declared in shared.metrics."""
        if name not in BY_NAME:
            raise ValueError(f"{name!r} is not declared in shared/metrics.py")
        with self._lock:
            self._values[name] = float(value)

    def values(self) -> dict[str, float]:
        """Every known figure now: undeclared names and NaN/inf are left out (unknown is omitted, never NaN)."""
        with self._lock:
            out = dict(self._values)
            sources = list(self._sources)
        for source in sources:
            try:
                out.update(source())
            except Exception:
                # One broken figure source must not stop the report that would show something is wrong.
                log.exception("telemetry source %r failed; its figures are left out of this report", source)
        out["uptime_s"] = self._clock() - self._started
        checked = self._checked({k: v for k, v in out.items() if self._declared(k) and _finite(v)})
        if self.dropped:
            checked[DROPPED] = float(self.dropped)
        return checked

    def _checked(self, values: Mapping[str, object]) -> dict[str, float]:
        """Figures that pass their metric's type and range check; one that fails is dropped, counted, logged once.

        One bad figure (a buggy source, a clock gone wild) must not cost the whole report its other figures.
        """
        out: dict[str, float] = {}
        for name, value in values.items():
            try:
                out[name] = BY_NAME[name].check(value)
            except ValueError as exc:
                with self._lock:
                    self.dropped += 1
                    first = f"check:{name}" not in self._warned
                    self._warned.add(f"check:{name}")
                if first:
                    log.warning("telemetry figure left out: %s (logged once per figure; counted in %s)", exc,
                                DROPPED)
        return out

    def _declared(self, name: str) -> bool:
        if name in BY_NAME:
            return True
        if name not in self._warned:
            self._warned.add(name)
            log.warning("telemetry figure %r is not declared in shared/metrics.py; not sent", name)
        return False

    def build(self, values: Mapping[str, float] | None = None) -> TelemetryPayload:
        """One telemetry payload with a fresh envelope."""
        figures = self.values() if values is None else self._checked({k: v for k, v in values.items()
                                                                      if self._declared(k)})
        counts = _bounded(self._class_counts() if self._class_counts is not None else None, MAX_CLASS_COUNTS)
        zones = _bounded(self._zone_counts() if self._zone_counts is not None else None, MAX_ZONE_COUNTS)
        return TelemetryPayload.build(self.envelopes.next(), figures, counts, zones, self._streams())

    def _streams(self) -> dict[str, dict[str, float]] | None:
        """Each stream's declared figures that pass their check; a failing one is dropped and counted (as flat)."""
        if self._stream_figures is None:
            return None
        try:
            streams = self._stream_figures()
        except Exception:
            log.exception("per-stream figures failed; left out of this report")
            return None
        out: dict[str, dict[str, float]] = {}
        for name, figures in streams.items():
            kept = out[name] = {}
            for key, value in figures.items():
                metric = STREAM_BY_NAME.get(key)
                if metric is None:
                    continue
                try:
                    kept[key] = metric.check(value)
                except ValueError as exc:
                    with self._lock:
                        self.dropped += 1
                        first = f"stream:{key}" not in self._warned
                        self._warned.add(f"stream:{key}")
                    if first:
                        log.warning("stream %s: figure left out: %s (logged once per figure)", name, exc)
        return out


def _bounded(counts: dict[str, int] | None, limit: int) -> dict[str, int] | None:
    """At most `limit` keys (the payload's bound), shortest names first so zone totals outlive per-label keys."""
    if counts is None or len(counts) <= limit:
        return counts
    return dict(sorted(counts.items(), key=lambda kv: (len(kv[0]), kv[0]))[:limit])


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


class TelemetryLoop:
    """Publishes a report every interval on its own supervised thread, and hands the same figures to sinks
    (Prometheus); a failing report is logged, counted in Health and retried, never the end of reporting."""

    def __init__(
        self,
        telemetry: Telemetry,
        link: Link,
        topic: str,
        interval_s: float,
        sinks: Sequence[Sink] = (),
        *,
        health: Health | None = None,
    ) -> None:
        self.telemetry = telemetry
        self._link = link
        self._topic = topic
        self._interval = interval_s
        self._sinks = list(sinks)
        self._health = health or Health()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report_once(self) -> TelemetryPayload:
        """Build, publish (queued, never blocking) and feed sinks once."""
        values = self.telemetry.values()
        payload = self.telemetry.build(values)
        self._link.publish_json(self._topic, payload)
        for sink in self._sinks:
            try:
                sink(values)
            except Exception:
                log.exception("telemetry sink %r failed; MQTT reporting continues", sink)
        return payload

    def start(self) -> None:
        """Report every interval until stop()."""
        self._thread = spawn(TELEMETRY, self._run, self._stop, self._health)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.report_once()
            self._health.recovered(TELEMETRY)

    def stop(self, final_report: bool = True) -> None:
        """Stop the thread, sending one last report so the final counts reach the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)
        if final_report:
            try:
                self.report_once()
            except AgentError as exc:
                log.error("final telemetry report not queued: %s", exc)
