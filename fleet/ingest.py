"""Ingestion: MQTT messages of the fleet's devices become registry records, telemetry samples and command replies.

Devices are untrusted input. paho's network thread only queues (`offer`) into a queue bounded in bytes with one
lane per device (fleet.ingest_queue), so a flooding device sheds only its own messages. A writer drains it in
batches: each message is parsed and validated alone (shared.payloads bounds every field), then the batch is
written in one transaction (telemetry rows and one revision-guarded update per device). When the database
refuses the batch, it is applied again device by device, then message by message, so a message that fails
anywhere is refused and counted against its own device (`refused` on its record) and the rest commits. Telemetry and
replies come through shared subscriptions (each worker gets a share); the retained `status` and `state` are
subscribed plainly by every worker: MQTT 5 says a shared subscription gets no retained messages (EMQX and HiveMQ
follow it; Mosquitto 2.0 delivers them anyway, checked), and a worker must see every device's retained state at
start. They are low volume, and applying one twice changes nothing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial, reduce
from typing import Literal

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from fleet.db.store import FleetStore
from fleet.db.streams import DeviceStreams
from fleet.errors import FleetError
from fleet.ingest_queue import DEFAULT_DEVICE_BYTES, DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, FairQueue, Queued
from fleet.mqtt_client import shared
from fleet.registry import (
    DeviceRecord,
    TelemetryReading,
    TelemetrySample,
    apply_state,
    apply_status,
    apply_telemetry,
    count_refused,
    count_shed,
    telemetry_sample,
)
from fleet.telemetry_reader import read_telemetry
from shared.names import check_ident
from shared.payloads import ReplyPayload, StatePayload, TelemetryPayload
from shared.topics import ROOT

log = logging.getLogger(__name__)

Kind = Literal["status", "state", "telemetry", "reply"]
MAX_PAYLOAD_BYTES = 256 * 1024
# A batch stops taking messages past this many bytes, so a few large messages make a small transaction.
MAX_BATCH_BYTES = 8 * 1024 * 1024
# What reading a device's payload may raise (RecursionError: nesting deeper than any parser allows).
PARSE_ERRORS = (ValueError, ValidationError, TypeError, ArithmeticError, RecursionError)
# What the database (or a driver) may raise on a value it will not store; one message's failure, not the thread's.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
# Devices whose first refusal was logged are remembered up to this many; beyond, refusals are counted only.
MAX_WARNED = 10_000
WRITE_ERRORS = (SQLAlchemyError, FleetError, ValueError, TypeError, ArithmeticError)


@dataclass(frozen=True)
class Route:
    """What a topic is: whose device, which leaf."""

    device_id: str
    kind: Kind


# Topics remembered by route(): a device has a handful, so 10,000 devices fit many times over.
ROUTES_REMEMBERED = 1 << 18


@lru_cache(maxsize=ROUTES_REMEMBERED)
def route(topic: str, fleet: str, root: str = ROOT) -> Route | None:
    """The device and leaf of a topic of this fleet; None for anything else (another fleet, a command, events).
    Remembered per topic: every message is routed on paho's thread and again by the writer."""
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
    """Messages taken in, refused and shed since start, per kind (for logs, tests and the bench)."""

    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    last_reject: str | None = None
    # Messages of devices left unregistered because the registry holds max_unassigned devices already.
    capped: int = 0
    # Devices whose per-stream figures the database refused (their samples kept: fleet.ingest._streams_tx).
    streams_lost: int = 0


Message = tuple[str, bytes, bool, int]  # topic, payload, retained, received_ms
Change = Callable[[DeviceRecord], DeviceRecord]


@dataclass
class _Parsed:
    """One message after validation: what it changes on its device's record, and what else it stores."""

    kind: Kind
    received_ms: int
    change: Change | None = None
    sample: TelemetrySample | None = None
    reply: tuple[str, bool, str | None] | None = None
    # Counted in stats.accepted (a message, not a refusal or shed booking).
    accepted: bool = True
    # The database refused it (its registry change or its sample): nothing more of it is stored.
    refused: bool = False


def _chain(steps: Sequence[Change]) -> Change:
    """One change applying steps in order (pure, so a retried update can run it again)."""

    def run(rec: DeviceRecord) -> DeviceRecord:
        return reduce(lambda acc, f: f(acc), steps, rec)

    return run


def _streams_of(samples: Sequence[tuple[str, TelemetrySample | None, int]]) -> list[DeviceStreams]:
    """The per-stream figures the live reports among (device, sample, received ms) carry."""
    return [DeviceStreams.reported(dev, s.ts_ms, received, s.streams) for dev, s, received in samples
            if s is not None and s.streams is not None]


def _why(exc: BaseException) -> str:
    """One printable ASCII line saying what was wrong with a message (the first validation error, or the
    exception): it may echo what the device sent, and goes to the log and the database."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(map(str, first["loc"]))
        text = f"{loc + ': ' if loc else ''}{first['msg']}"
    elif isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        lines = str(orig if orig is not None else exc).strip().splitlines()
        text = f"refused by the database: {lines[0] if lines else type(exc).__name__}"
    else:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return _UNPRINTABLE.sub("?", text)[:200]


class Ingest:
    """Turns a stream of MQTT messages into registry state in the store."""

    def __init__(self, store: FleetStore, max_batch: int = 1000, max_queue_bytes: int = DEFAULT_MAX_BYTES,
                 device_queue_bytes: int = DEFAULT_DEVICE_BYTES, max_unassigned: int | None = None,
                 max_queue_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_unassigned = max_unassigned
        self.stats = IngestStats()
        self.queue = FairQueue(max_queue_bytes, device_queue_bytes, max_queue_messages)
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    def offer(self, topic: str, payload: bytes, retained: bool) -> None:
        """Queue one message (paho's thread); over its device's share or the byte bound it is shed and counted."""
        r = route(topic, self.store.fleet)
        if r is None:
            return
        if not self.queue.put(r.device_id, Queued(topic, payload, retained, self.store.clock())):
            with self._lock:
                self.stats.dropped += 1

    def drain(self, timeout_s: float = 0.5) -> int:
        """Process the messages waiting now (waiting up to timeout_s for the first); returns how many."""
        batch = self.queue.take(self.max_batch, MAX_BATCH_BYTES, timeout_s)
        shed = self.queue.take_shed()
        if not batch and not shed:
            return 0
        self.process([(q.topic, q.payload, q.retained, q.received_ms) for _, q in batch], shed)
        return len(batch)

    def pending(self) -> int:
        """Messages queued and not yet processed."""
        return len(self.queue)

    def process(self, batch: Sequence[Message], shed: dict[str, int] | None = None) -> None:
        """Apply a batch; a message that fails (parse, validation, database) is refused against its device only."""
        per_device: dict[str, list[_Parsed]] = {}
        now = self.store.clock()
        batch = self._past_tombstones(batch)
        for device, n in (shed or {}).items():
            per_device.setdefault(device, []).append(
                _Parsed("status", now, change=partial(count_shed, n=n, received_ms=now), accepted=False))
        accepted: dict[str, int] = {}
        fleet = self.store.fleet
        for topic, payload, retained, received in batch:
            r = route(topic, fleet)
            if r is None:
                continue
            try:
                parsed = self._parse(r, payload, retained, received)
            except PARSE_ERRORS as exc:
                per_device.setdefault(r.device_id, []).append(self._refusal(r, exc, received))
                continue
            accepted[r.kind] = accepted.get(r.kind, 0) + 1
            items = per_device.get(r.device_id)
            if items is None:
                per_device[r.device_id] = [parsed]
            else:
                items.append(parsed)
        for kind, n in accepted.items():
            self._count(self.stats.accepted, kind, n)
        if not per_device:
            return
        capped = self._write_registry(per_device)
        self._write_samples({dev: items for dev, items in per_device.items() if dev not in capped})
        self._write_replies(per_device, capped)

    def _past_tombstones(self, batch: Sequence[Message]) -> Sequence[Message]:
        """The batch without the retained messages of removed devices (the broker keeps what the fleet's user may
        not clear); a live, non-empty message lifts the device's tombstone and counts with what follows it."""
        routed = [(m, route(m[0], self.store.fleet)) for m in batch]
        try:
            tombs = self.store.tombstones.among({r.device_id for _, r in routed if r is not None})
        except WRITE_ERRORS as exc:
            log.warning("cannot read removed devices' tombstones (%s); taking the batch as it is", _why(exc))
            return batch
        if not tombs:
            return batch
        kept: list[Message] = []
        back: set[str] = set()
        for m, r in routed:
            if r is not None and r.device_id in tombs:
                if m[2] or not m[1]:
                    continue  # the removed device's retained message, or a clear: no sign of life
                tombs.discard(r.device_id)
                back.add(r.device_id)
            kept.append(m)
        if back:
            try:
                self.store.tombstones.lift(back)
            except WRITE_ERRORS as exc:  # their messages still count; the tombstone goes with the next one
                log.warning("cannot lift the tombstones of %s (%s)", ", ".join(sorted(back)), _why(exc))
                return kept
            log.info("removed device(s) %s published again: registered anew", ", ".join(sorted(back)))
        return kept

    def _write_registry(self, per_device: dict[str, list[_Parsed]]) -> set[str]:
        """Each device's messages coalesced into one record write (last value wins), the batch in one transaction;
        when the database refuses it, device by device, then message by message, a failing message refused against
        its own device (its sample and reply are dropped). Returns the devices left out by the registry's cap."""
        try:
            return self._registry_tx(per_device)
        except WRITE_ERRORS as exc:
            log.debug("batch refused by the database (%s); applying it device by device", _why(exc))
        capped: set[str] = set()
        for device, items in per_device.items():
            try:
                capped |= self._registry_tx({device: items})
                continue
            except WRITE_ERRORS:
                pass
            for item in items:
                try:
                    capped |= self._registry_tx({device: [item]})
                except WRITE_ERRORS as exc:
                    self._refuse(device, item, exc)
        return capped

    def _registry_tx(self, per_device: dict[str, list[_Parsed]]) -> set[str]:
        changes = {dev: steps[0] if len(steps) == 1 else _chain(steps) for dev, items in per_device.items()
                   if (steps := [i.change for i in items if i.change is not None])}
        if not changes:
            return set()
        with self.store.engine.begin() as conn:
            done = self.store.devices.update_in(conn, changes, self.max_unassigned)
        # Committed: what follows must not raise into the fallback, which would apply the changes again.
        self.store.devices.remember(done)
        capped = done.capped
        for dev in done.retry:
            try:
                self.store.devices.update(dev, changes[dev])
            except WRITE_ERRORS as exc:
                log.error("device %s: its record missed a batch's change (%s)", dev, _why(exc))
        if capped:
            self._capped(capped, sum(len(per_device[d]) for d in capped))
        return capped

    def _write_samples(self, per_device: dict[str, list[_Parsed]]) -> None:
        """The history write, after the registry's commit (so a device's record never waits on it): the batch's
        samples in one statement and the per-stream figures its live reports carry in one upsert, in one
        transaction; else device by device, then one by one, a refused sample refused on its device, and the
        streams apart (a stream row the database refuses costs only that: logged and counted, the samples kept)."""
        rows = {dev: kept for dev, items in per_device.items()
                if (kept := [i for i in items if i.sample is not None and not i.refused])}
        if not rows:
            return
        try:
            self._samples_tx(rows, with_streams=True)
            return
        except WRITE_ERRORS as exc:
            log.debug("samples refused by the database (%s); storing them device by device", _why(exc))
        for device, items in rows.items():
            try:
                self._samples_tx({device: items})
            except WRITE_ERRORS:
                for item in items:
                    try:
                        self._samples_tx({device: [item]})
                    except WRITE_ERRORS as exc:
                        self._refuse(device, item, exc)
            self._streams_tx(device, [i for i in items if not i.refused])

    def _samples_tx(self, rows: dict[str, list[_Parsed]], with_streams: bool = False) -> None:
        samples = [(dev, i.sample, i.received_ms) for dev, items in rows.items() for i in items
                   if i.sample is not None]
        with self.store.engine.begin() as conn:
            self.store.telemetry.add(samples, conn)
            if with_streams:
                self.store.streams.keep(_streams_of(samples), conn)

    def _streams_tx(self, device: str, items: list[_Parsed]) -> None:
        """One device's streams on their own (the fallback path): a refusal is logged and counted, not booked
        against the device, whose samples are stored."""
        readings = _streams_of([(device, i.sample, i.received_ms) for i in items if i.sample is not None])
        if not readings:
            return
        try:
            with self.store.engine.begin() as conn:
                self.store.streams.keep(readings, conn)
        except WRITE_ERRORS as exc:
            self.stats.streams_lost += 1
            log.warning("device %s: its per-stream figures were refused by the database (%s); its samples are "
                        "kept", device, _why(exc))

    def _write_replies(self, per_device: dict[str, list[_Parsed]], capped: set[str]) -> None:
        for dev, items in per_device.items():
            for i in items:
                if i.reply is not None and not i.refused and dev not in capped:
                    try:
                        self.store.commands.reply(*i.reply, i.received_ms, device_id=dev)
                    except WRITE_ERRORS as exc:
                        self._book(dev, self._refusal(Route(dev, "reply"), exc, i.received_ms))

    def _refuse(self, device: str, item: _Parsed, exc: BaseException) -> None:
        """A message the database refused: no longer counted as accepted, booked as refused on its device."""
        if item.accepted:
            self._count(self.stats.accepted, item.kind, -1)
        item.refused = True
        self._book(device, self._refusal(Route(device, item.kind), exc, item.received_ms))

    def _book(self, device: str, refusal: _Parsed) -> None:
        """Count a refusal on the device's record; a database that refuses even that is logged, never raised."""
        if refusal.change is None:
            return
        try:
            self.store.devices.update(device, refusal.change)
        except WRITE_ERRORS as exc:
            log.error("cannot book a refused message against %s: %s", device, _why(exc))

    def _capped(self, devices: set[str], messages: int) -> None:
        with self._lock:
            self.stats.capped += messages
        if ("*", "capped") not in self._warned:
            self._warned.add(("*", "capped"))
            log.warning("registry holds registry.max_unassigned_devices (%s) devices without an assignment: "
                        "messages of new device ids (%s...) are not registered; assign groups or raise the cap",
                        self.max_unassigned, sorted(devices)[0])

    def _parse(self, r: Route, payload: bytes, retained: bool, received: int) -> _Parsed:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"{len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} limit")
        if r.kind == "status":
            if not payload:
                return _Parsed(r.kind, received)  # a cleared retained status: the device was removed
            text = payload.decode("utf-8", errors="replace").strip()
            apply_status(DeviceRecord(self.store.fleet, r.device_id), text, received, retained)  # validates
            return _Parsed(r.kind, received, change=lambda rec: apply_status(rec, text, received, retained))
        if r.kind == "state":
            if not payload:
                return _Parsed(r.kind, received)
            state = StatePayload.model_validate_json(payload)
            self._same_device(r, state.device_id)
            return _Parsed(r.kind, received, change=lambda rec: apply_state(rec, state, received, retained))
        if r.kind == "telemetry":
            # The fast reader takes an honest report; anything else goes to the model, which words the refusal.
            tel = read_telemetry(payload) or TelemetryReading.of(TelemetryPayload.model_validate_json(payload))
            self._same_device(r, tel.device_id)
            return _Parsed(r.kind, received, change=lambda rec: apply_telemetry(rec, tel, received),
                           sample=telemetry_sample(tel))
        reply = ReplyPayload.model_validate_json(payload)
        self._same_device(r, reply.device_id)
        return _Parsed(r.kind, received, reply=(reply.id, reply.ok, reply.error) if reply.id is not None else None)

    @staticmethod
    def _same_device(r: Route, device_id: str) -> None:
        if device_id != r.device_id:
            raise ValueError(f"payload names device {device_id!r} but came on the topic of {r.device_id!r}")

    def _count(self, counts: dict[str, int], kind: str, n: int = 1) -> None:
        with self._lock:
            counts[kind] = counts.get(kind, 0) + n

    def _refusal(self, r: Route, exc: BaseException, received: int) -> _Parsed:
        """Count a refused message (stats, log once per device and kind) and the change booking it on the device."""
        self._count(self.stats.rejected, r.kind)
        why = _why(exc)
        self.stats.last_reject = f"{r.device_id} {r.kind}: {why}"
        if (r.device_id, r.kind) not in self._warned and len(self._warned) < MAX_WARNED:
            self._warned.add((r.device_id, r.kind))
            log.warning("refused a %s message from %s (%s); further ones are counted only (refused on the device)",
                        r.kind, r.device_id, why)
        text = f"{r.kind}: {why}"
        return _Parsed(r.kind, received, change=lambda rec: count_refused(rec, text, received), accepted=False)
