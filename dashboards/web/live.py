"""The live channel: one batch of changed rows per interval to every browser, never one message per telemetry.

`LiveDiff` is the pure part (what changed since the last batch); `LiveHub` polls the reader on a thread each
`live_interval_s`, evaluates the alert rules, and hands each batch to the connected server-sent-event streams. A
stream that falls behind is closed; the browser's EventSource reconnects and starts again from a snapshot.

Every batch is encoded as strict JSON (no Infinity/NaN, which JSON.parse refuses and which would break every page):
a non-finite figure that got this far is dropped (shown as absent), counted in `nonfinite` and logged once, and a
batch that fails for any reason costs only that batch, never the polling task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.web.alerts import Alert, AlertTracker, Rule, evaluate
from dashboards.web.finite import dumps
from dashboards.web.objects import ObjectBuffer
from dashboards.web.ports import DeviceRow, FleetReader, RolloutView
from dashboards.web.snapshot import FleetSnapshot, Trend, trend_counts

log = logging.getLogger(__name__)

QUEUE_BATCHES = 8  # a stream this many batches behind is dropped (it reconnects from a snapshot)
EVENTS_LOOKBACK_MS = 10 * 60 * 1000
Rows = str  # what device rows a stream carries: "all", "none" (the summary instead), or "device:<id>" (one row)
DEVICE_ROWS = "device:"


def counts(rows: Sequence[DeviceRow]) -> dict[str, dict[str, int]]:
    """Devices by status and by served model version (the fleet page's header)."""
    by_version = Counter(f"{r.model_name or '-'} v{r.model_version}" if r.model_version else "none" for r in rows)
    return {"status": dict(Counter(r.status for r in rows)), "version": dict(by_version)}


def rollout_summary(r: RolloutView) -> dict[str, Any]:
    """What the live channel carries of a rollout (the rollouts page refetches the detail when it changes)."""
    return r.model_dump(mode="json", exclude={"decisions"}) | {"last_decision": (
        r.decisions[-1].model_dump(mode="json") if r.decisions else None)}


@dataclass
class LiveDiff:
    """Remembers the last batch's rows so the next one carries only what changed."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts: list[dict[str, object]] = field(default_factory=list)
    dumped: dict[str, tuple[DeviceRow, dict[str, Any]]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """Everything, for a stream that just connected."""
        return {"type": "snapshot", "devices": list(self.rows.values()), "removed": [], "counts": self.counts,
                "rollouts": list(self.rollouts.values()), "alerts": self.alerts}

    def step(self, devices: Sequence[DeviceRow], rollouts: Sequence[RolloutView], alerts: Sequence[Alert]
             ) -> dict[str, Any] | None:
        """The delta since the previous step, or None when nothing changed."""
        rows: dict[str, dict[str, Any]] = {}
        for d in devices:  # a reader that hands back the same row object when nothing moved is not dumped again
            held = self.dumped.get(d.device_id)
            if held is None or held[0] is not d:
                held = (d, d.model_dump(mode="json"))
                self.dumped[d.device_id] = held
            rows[d.device_id] = held[1]
        for gone in [k for k in self.dumped if k not in rows]:
            del self.dumped[gone]
        changed = [row for k, row in rows.items() if self.rows.get(k) != row]
        removed = [k for k in self.rows if k not in rows]
        summaries = {r.rollout_id: rollout_summary(r) for r in rollouts}
        changed_rollouts = [s for k, s in summaries.items() if self.rollouts.get(k) != s]
        new_counts = counts(devices)
        alert_rows = [a.as_json() for a in alerts]
        delta: dict[str, Any] = {"type": "delta", "devices": changed, "removed": removed,
                                 "rollouts": changed_rollouts}
        if new_counts != self.counts:
            delta["counts"] = new_counts
        if alert_rows != self.alerts:
            delta["alerts"] = alert_rows
        self.rows, self.rollouts, self.counts, self.alerts = rows, summaries, new_counts, alert_rows
        if not (changed or removed or changed_rollouts or "counts" in delta or "alerts" in delta):
            return None
        return delta


def shaped(message: dict[str, Any], rows: Rows, summary: dict[str, Any] | None) -> dict[str, Any]:
    """A batch as one stream takes it: every row, none (the fleet summary instead), or one device's row."""
    if rows == "all":
        return message
    if rows == "none":
        out = {k: v for k, v in message.items() if k not in ("devices", "removed")}
        out["summary"] = summary
        return out
    one = rows.removeprefix(DEVICE_ROWS)
    return message | {"devices": [d for d in message["devices"] if d["device_id"] == one],
                      "removed": [k for k in message["removed"] if k == one]}


AlertSink = Callable[[list[Alert], list[Alert]], None]  # (started, ended): publishes them (MQTT)


class LiveHub:
    """Polls the fleet each interval and fans the batch out to every stream."""

    def __init__(self, reader: FleetReader, interval_s: float, rules: Sequence[Rule],
                 alert_sink: AlertSink | None = None, clock_ms: Callable[[], int] | None = None,
                 objects: ObjectBuffer | None = None) -> None:
        self._reader = reader
        self._objects = objects  # a detector's objects in zones, for the zone rules
        self._interval = interval_s
        self._rules = list(rules)
        self._sink = alert_sink
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._diff = LiveDiff()
        self._tracker = AlertTracker()
        self._streams: dict[asyncio.Queue[str | None], Rows] = {}
        self._device_streams: dict[asyncio.Queue[str | None], tuple[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.errors = 0
        self.nonfinite = 0
        self._trend = Trend()
        self.snapshot = FleetSnapshot([], self._clock_ms(), self._trend)

    def _last_summary(self) -> dict[str, Any]:
        """The summary the streams carry: counts and only the newest trend point (the page fetched the rest)."""
        s = self.snapshot.summary()
        s["trend"] = {k: v[-1:] for k, v in s["trend"].items()}
        return s

    def alerts(self) -> list[Alert]:
        """Alerts firing now."""
        return self._tracker.active()

    async def start(self) -> None:
        """Take the first snapshot and begin polling."""
        await asyncio.to_thread(self._poll)
        self._ready.set()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop polling and end every stream."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for q in list(self._streams):
            q.put_nowait(None)

    def _poll(self) -> dict[str, Any] | None:
        now = self._clock_ms()
        devices = self._reader.devices()
        rollouts = self._reader.rollouts()
        if self._rules:
            events = self._reader.events(None, now - EVENTS_LOOKBACK_MS, 1000)
            occupants = self._objects.occupants() if self._objects is not None else []
            firing = evaluate(self._rules, devices, self._reader.latest_figures(), events, now, occupants)
            started, ended = self._tracker.update(firing, now)
            if self._sink is not None and (started or ended):
                self._sink(started, ended)
        self._trend.add(now, trend_counts(devices))
        delta = self._diff.step(devices, rollouts, self._tracker.active())
        # Every browser's table and summary read this, so no request reads the registry again.
        self.snapshot = FleetSnapshot(devices, now, self._trend, dict(self._diff.rows))
        return delta

    def _device_samples(self) -> dict[asyncio.Queue[str | None], str]:
        out: dict[asyncio.Queue[str | None], str] = {}
        now = self._clock_ms()
        for q, (device_id, since) in list(self._device_streams.items()):
            samples = self._reader.history(device_id, since + 1, now)
            if samples:
                self._device_streams[q] = (device_id, samples[-1].ts_ms)
                out[q] = self._encode({"type": "samples", "device_id": device_id,
                                       "samples": [s.model_dump(mode="json") for s in samples]})
        return out

    def _encode(self, obj: Any) -> str:
        text, dropped = dumps(obj)
        if dropped:
            if not self.nonfinite:
                log.warning("live channel: dropped non-finite figures (Infinity/NaN) from a batch; a device sent "
                            "figures the ingest should have refused (counted, logged once)")
            self.nonfinite += 1
        return text

    async def _run(self) -> None:
        took = 0.0
        while True:
            # One tick per interval; a tick that takes more than half of it (10,000 devices on a busy machine) is
            # followed by as long a pause, so reading the fleet never takes more than half of the process's time.
            await asyncio.sleep(max(self._interval - took, took))
            try:
                started = time.monotonic()
                delta = await asyncio.to_thread(self._poll)
                took = time.monotonic() - started
                per_device = await asyncio.to_thread(self._device_samples)
                texts = self._texts(delta)
            except Exception as exc:  # noqa: BLE001 - a failing read (database restarting) must not end the live channel
                self.errors += 1
                log.warning("live channel: reading the fleet failed (%s: %s); retrying", type(exc).__name__, exc)
                continue
            for q, rows in list(self._streams.items()):
                for msg in (texts.get(rows), per_device.get(q)):
                    if msg is None:
                        continue
                    try:
                        q.put_nowait(msg)
                    except asyncio.QueueFull:
                        self._drop(q)

    def _texts(self, delta: dict[str, Any] | None) -> dict[Rows, str]:
        """The batch encoded once per kind of stream connected (each device's only when its row changed)."""
        if delta is None:
            return {}
        summary = self._last_summary()
        out: dict[Rows, str] = {}
        for rows in set(self._streams.values()):
            msg = shaped(delta, rows, summary)
            if rows in ("all", "none") or msg["devices"] or msg["removed"] or msg["rollouts"] or "alerts" in msg:
                out[rows] = self._encode(msg)
        return out

    def _drop(self, q: asyncio.Queue[str | None]) -> None:
        self._streams.pop(q, None)
        self._device_streams.pop(q, None)
        with contextlib.suppress(asyncio.QueueFull):
            q.put_nowait(None)

    async def stream(self, device_id: str | None = None, since_ms: int | None = None, rows: Rows = "all"
                     ) -> AsyncIterator[str]:
        """Server-sent event lines: a snapshot first, then one delta per interval that changed anything. rows:
        "all" (every changed row), "none" (the fleet summary instead: the fleet page fetches its one page), or
        "device:<id>" (only that row)."""
        await self._ready.wait()
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_BATCHES)
        self._streams[q] = rows
        if device_id is not None:
            self._device_streams[q] = (device_id, since_ms if since_ms is not None else self._clock_ms())
        try:
            yield f"data: {self._encode(shaped(self._diff.snapshot(), rows, self.snapshot.summary()))}\n\n"
            while True:
                msg = await q.get()
                if msg is None:
                    return
                yield f"data: {msg}\n\n"
        finally:
            self._streams.pop(q, None)
            self._device_streams.pop(q, None)
