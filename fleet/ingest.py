"""Ingestion: MQTT messages of the fleet's devices become registry records, telemetry samples and command replies.

paho's network thread only queues (`offer`); a writer drains the queue in batches, one database transaction for
the telemetry of a batch and one revision-guarded update per device, so a burst costs few commits. Telemetry and
replies come through shared subscriptions (each worker gets a share); the retained `status` and `state` are
subscribed plainly by every worker: MQTT 5 says a shared subscription gets no retained messages (EMQX and HiveMQ
follow it; Mosquitto 2.0 delivers them anyway, checked), and a worker must see every device's retained state at
start. They are low volume, and applying one twice changes nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Literal

from pydantic import ValidationError

from fleet.db.store import FleetStore
from fleet.mqtt_client import shared
from fleet.registry import (
    DeviceRecord,
    TelemetrySample,
    apply_state,
    apply_status,
    apply_telemetry,
    telemetry_sample,
)
from shared.names import check_ident
from shared.payloads import ReplyPayload, StatePayload, TelemetryPayload
from shared.topics import ROOT

log = logging.getLogger(__name__)

Kind = Literal["status", "state", "telemetry", "reply"]
MAX_QUEUED = 200_000
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Route:
    """What a topic is: whose device, which leaf."""

    device_id: str
    kind: Kind


def route(topic: str, fleet: str, root: str = ROOT) -> Route | None:
    """The device and leaf of a topic of this fleet; None for anything else (another fleet, a command, events)."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != root or parts[1] != fleet:
        return None
    device, leaf = parts[2], parts[3:]
    try:
        check_ident(device, "device id")
    except ValueError:
        return None
    if leaf in (["status"], ["state"], ["telemetry"]):
        return Route(device, leaf[0])  # type: ignore[arg-type]
    if len(leaf) == 3 and leaf[0] == "cmd" and leaf[2] == "reply":
        return Route(device, "reply")
    return None


def subscriptions(fleet: str, share_group: str, root: str = ROOT) -> list[str]:
    """Filters a worker subscribes: retained status/state plainly, telemetry and replies as a shared group."""
    base = f"{root}/{check_ident(fleet, 'fleet')}/+"
    return [f"{base}/status", f"{base}/state", shared(share_group, f"{base}/telemetry"),
            shared(share_group, f"{base}/cmd/+/reply")]


@dataclass
class IngestStats:
    """Messages taken in and refused since start, per kind (for logs, tests and the bench)."""

    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    last_reject: str | None = None


Message = tuple[str, bytes, bool, int]  # topic, payload, retained, received_ms


def _chain(steps: Sequence[Callable[[DeviceRecord], DeviceRecord]]) -> Callable[[DeviceRecord], DeviceRecord]:
    """One change applying steps in order (pure, so a retried update can run it again)."""

    def run(rec: DeviceRecord) -> DeviceRecord:
        return reduce(lambda acc, f: f(acc), steps, rec)

    return run


class Ingest:
    """Turns a stream of MQTT messages into registry state in the store."""

    def __init__(self, store: FleetStore, max_batch: int = 1000) -> None:
        self.store = store
        self.max_batch = max_batch
        self.stats = IngestStats()
        self._queue: queue.Queue[Message] = queue.Queue(MAX_QUEUED)
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    def offer(self, topic: str, payload: bytes, retained: bool) -> None:
        """Queue one message (paho's thread); a full queue drops it and counts the drop."""
        try:
            self._queue.put_nowait((topic, payload, retained, self.store.clock()))
        except queue.Full:
            self.stats.dropped += 1

    def drain(self, timeout_s: float = 0.5) -> int:
        """Process the messages waiting now (waiting up to timeout_s for the first); returns how many."""
        try:
            batch = [self._queue.get(timeout=timeout_s)]
        except queue.Empty:
            return 0
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.process(batch)
        return len(batch)

    def pending(self) -> int:
        """Messages queued and not yet processed."""
        return self._queue.qsize()

    def process(self, batch: Sequence[Message]) -> None:
        """Apply a batch: telemetry rows in one transaction, then each device's changes in arrival order."""
        changes: dict[str, list[Callable[[DeviceRecord], DeviceRecord]]] = {}
        samples: list[tuple[str, TelemetrySample, int]] = []
        for topic, payload, retained, received in batch:
            r = route(topic, self.store.fleet)
            if r is None:
                continue
            try:
                change = self._parse(r, payload, retained, received, samples)
            except (ValueError, ValidationError) as exc:
                self._reject(r, exc)
                continue
            self._count(self.stats.accepted, r.kind)
            if change is not None:
                changes.setdefault(r.device_id, []).append(change)
        self.store.telemetry.add(samples)
        self.store.devices.update_many({device: _chain(steps) for device, steps in changes.items()})

    def _parse(self, r: Route, payload: bytes, retained: bool, received: int,
               samples: list[tuple[str, TelemetrySample, int]]) -> Callable[[DeviceRecord], DeviceRecord] | None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"{len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} limit")
        if r.kind == "status":
            if not payload:
                return None  # a cleared retained status: the device was removed from the broker
            text = payload.decode("utf-8", errors="replace").strip()
            apply_status(DeviceRecord(self.store.fleet, r.device_id), text, received, retained)  # validates
            return lambda rec: apply_status(rec, text, received, retained)
        if r.kind == "state":
            if not payload:
                return None
            state = StatePayload.model_validate_json(payload)
            self._same_device(r, state.device_id)
            return lambda rec: apply_state(rec, state, received, retained)
        if r.kind == "telemetry":
            tel = TelemetryPayload.model_validate_json(payload)
            self._same_device(r, tel.device_id)
            samples.append((r.device_id, telemetry_sample(tel), received))
            return lambda rec: apply_telemetry(rec, tel, received)
        reply = ReplyPayload.model_validate_json(payload)
        self._same_device(r, reply.device_id)
        if reply.id is not None:
            self.store.commands.reply(reply.id, reply.ok, reply.error, received)
        return None

    @staticmethod
    def _same_device(r: Route, device_id: str) -> None:
        if device_id != r.device_id:
            raise ValueError(f"payload names device {device_id!r} but came on the topic of {r.device_id!r}")

    def _count(self, counts: dict[str, int], kind: str) -> None:
        with self._lock:
            counts[kind] = counts.get(kind, 0) + 1

    def _reject(self, r: Route, exc: Exception) -> None:
        self._count(self.stats.rejected, r.kind)
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        self.stats.last_reject = f"{r.device_id} {r.kind}: {why}"
        if (r.device_id, r.kind) not in self._warned:
            self._warned.add((r.device_id, r.kind))
            log.warning("ignoring a malformed %s message from %s (%s); further ones are counted only",
                        r.kind, r.device_id, why)
