"""Desired state on the device: the retained, signed `desired` message makes the agent converge to one version.

The message is verified on the network thread (no I/O: keys from device.command_keys, addressee, seq above the
last applied one) and applied on this component's own supervised thread: check the seq again, persist it with the
state (check, then persist), then pin the version and deploy it. The pin is what holds the device there until a
newer desired state arrives; the persisted state re-pins it on the next start, before the broker is reached.

The retained message comes again on every (re)connect: the same seq as the state already applied is the state in
force, re-affirmed and not a refusal; a lower seq is an old message replayed and is refused and counted. An empty
retained message clears the desired state: the pin this component set is released and nothing else changes (with
sync.follow 'latest' the device follows its signed pointer again, anti-rollback still holds; with 'auto' or
'desired' it stays on what it serves: a device that has applied a desired state is managed by a fleet, `seen`).

A desired state names the model too: one for another model than the device follows (sync.model) is refused and
counted like a forged one, and changes nothing (no version, no pin, nothing persisted).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge.command_auth import load_command_keys
from edge.config import DeviceConfig
from edge.errors import CommandStateError
from edge.link.base import Link
from edge.refusal_log import RefusalLog
from edge.supervise import Health, spawn
from shared.command_signing import MAX_SEQ
from shared.desired_state import DesiredState, check_desired_sequence, is_cleared, verify_desired
from shared.errors import CommandError, CommandRefused, EdgeferryError
from shared.object_store import atomic_write
from shared.topics import DeviceTopics

log = logging.getLogger(__name__)

COMPONENT = "desired"
STATE_FILE = "desired-state.json"
FILE_VERSION = 1
_QUEUE = 8

Deploy = Callable[..., Mapping[str, Any]]
Pin = Callable[[Mapping[str, Any]], object]
Served = Callable[[], int | None]


def state_path(device: DeviceConfig) -> Path:
    """The desired-state file lives next to the command sequence state (device.command_state_path)."""
    return device.command_state_path.with_name(STATE_FILE)


class DesiredFile:
    """The last applied desired seq and the state in force, in a small JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt: str | None = None
        self.last_seq: int | None = None
        self.state: DesiredState | None = None
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.corrupt = f"cannot read desired state {self.path}: {exc.strerror}"
            log.error("%s; refusing desired state until it is readable", self.corrupt)
            return
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
                raise ValueError("unexpected layout")
            seq, raw = doc.get("last_seq"), doc.get("state")
            if type(seq) is not int or not 0 < seq <= MAX_SEQ:
                raise ValueError("unexpected last_seq")
            state = None if raw is None else DesiredState.model_validate(raw)
        except (ValueError, RecursionError, ValidationError) as exc:
            self.corrupt = (
                f"desired state {self.path} is corrupt ({type(exc).__name__}); refusing desired state until it is "
                "repaired or removed (removing it lets an older retained desired state apply once)"
            )
            log.error("%s", self.corrupt)
            return
        self.last_seq, self.state = seq, state

    def record(self, seq: int, state: DesiredState | None) -> None:
        """Persist, then remember (a failed write changes nothing)."""
        doc = {"version": FILE_VERSION, "last_seq": seq,
               "state": None if state is None else state.model_dump(mode="json")}
        atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n")
        self.last_seq, self.state = seq, state


@dataclass(frozen=True)
class _Job:
    state: DesiredState | None  # None: clear


class DesiredSync:
    """Subscribes the device's retained desired topic and converges to it; counts every refusal. Thread-safe."""

    def __init__(
        self,
        link: Link,
        topics: DeviceTopics,
        *,
        trusted: Mapping[str, Ed25519PublicKey],
        store: DesiredFile,
        deploy: Deploy,
        pin: Pin,
        served: Served,
        model: str,
        health: Health | None = None,
    ) -> None:
        self._link, self._topics = link, topics
        self.model = model
        self._served = served
        self.trusted = dict(trusted)
        self.store = store
        self._deploy, self._pin = deploy, pin
        self._health = health or Health()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=_QUEUE)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._refused = 0
        self._applied = 0
        self.last_error: str | None = None
        self._refusals = RefusalLog(log, "desired states")

    @classmethod
    def from_config(cls, device: DeviceConfig, link: Link, topics: DeviceTopics, *, deploy: Deploy, pin: Pin,
                    served: Served, model: str, health: Health | None = None) -> DesiredSync:
        """Keys from device.command_keys, state next to device.command_state_path; model is sync.model."""
        return cls(link, topics, trusted=load_command_keys(device.command_keys), store=DesiredFile(state_path(device)),
                   deploy=deploy, pin=pin, served=served, model=model, health=health)

    @property
    def seen(self) -> bool:
        """Whether this device has applied a signed desired state (persisted; a corrupt file counts): a fleet
        manages it, so in sync.follow 'auto' it no longer follows the published pointer."""
        return self.store.last_seq is not None or self.store.corrupt is not None

    @property
    def version(self) -> int | None:
        """The desired version in force (what the device converges to), or None."""
        state = self._in_force()
        return None if state is None else state.version

    @property
    def channel(self) -> str | None:
        """The pointer channel a desired state in force tells the device to follow, or None."""
        state = self._in_force()
        return None if state is None else state.channel

    @property
    def canary(self) -> bool:
        """Whether the desired state in force makes this device a rollout's canary (edge.shadow_policy)."""
        state = self._in_force()
        return state is not None and state.canary

    def _in_force(self) -> DesiredState | None:
        """The persisted state, unless it names another model (written before models were checked): never held."""
        state = self.store.state
        return state if state is None or state.model == self.model else None

    def metrics(self) -> dict[str, float]:
        """Telemetry figures: desired_version (0: none), desired_refused, desired_applied."""
        self._refusals.flush()
        with self._lock:
            return {"desired_version": float(self.version or 0), "desired_refused": float(self._refused),
                    "desired_applied": float(self._applied)}

    def start(self) -> None:
        """Re-pin a persisted desired state at once, then start the worker and subscribe (retained)."""
        state = self._in_force()
        if state is None and self.store.state is not None:
            log.warning("the persisted desired state names model %s, not %s (sync.model); not holding it",
                        self.store.state.model, self.model)
        if state is not None:
            self._hold(state.version)
            self._enqueue(_Job(state))
        self._stop.clear()
        self._worker = spawn(COMPONENT, self._run, self._stop, self._health)
        self._link.subscribe(self._topics.desired, self.on_message, retained=True)

    def stop(self, timeout_s: float = 30) -> None:
        """Let the worker finish what it runs (a deploy), then end it."""
        if self._worker is None:
            return
        self._stop.set()
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._worker.join(timeout=timeout_s)

    # -- network thread ----------------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """Verify fast (no I/O) and queue; refusals are logged and counted, never applied."""
        if topic != self._topics.desired:
            return
        if is_cleared(payload):
            self._enqueue(_Job(None))
            return
        try:
            if self.store.corrupt is not None:
                raise CommandRefused("state_corrupt", self.store.corrupt)
            state = verify_desired(payload, self.trusted, self._topics.fleet, self._topics.device_id, self.model)
            if self._is_in_force(state):
                log.debug("desired state seq %d re-affirmed", state.seq)
                self._enqueue(_Job(state))
                return
            check_desired_sequence(state, self.store.last_seq)
        except CommandRefused as exc:  # forged, unknown key, replayed, mis-addressed, another model
            self._refuse(str(exc), exc.reason)
            return
        except CommandError as exc:
            self._refuse(str(exc))
            return
        self._enqueue(_Job(state))

    def _is_in_force(self, state: DesiredState) -> bool:
        return self.store.last_seq == state.seq and self.store.state == state

    def _refuse(self, reason: str, kind: str = "malformed") -> None:
        self._refusals.refused("-", kind, reason)
        with self._lock:
            self._refused += 1
            self.last_error = reason

    def _enqueue(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            # Only the newest desired state matters; the retained message comes back on the next connect.
            log.warning("desired state queue full; dropping an update (the retained message is re-read on reconnect)")

    # -- worker ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                return
            if job.state is None:
                self._clear()
            else:
                self._apply(job.state)
            self._health.ok(COMPONENT)

    def _apply(self, state: DesiredState) -> None:
        if not self._is_in_force(state):
            try:  # check again (a newer state may have been applied since), then persist, then act
                check_desired_sequence(state, self.store.last_seq)
            except CommandRefused as exc:
                self._refuse(str(exc), exc.reason)
                return
            try:
                self.store.record(state.seq, state)
            except OSError as exc:
                err = CommandStateError(f"cannot record the desired state in {self.store.path}: "
                                        f"{exc.strerror or exc}; not applied")
                self._refuse(str(err), "state_write")
                return
            with self._lock:
                self._applied += 1
            log.info("desired state: %s %s (seq %d%s)", state.model, state.target, state.seq,
                     f", rollout {state.rollout_id}" if state.rollout_id else "")
        self._hold(state.version)  # a channel state releases the pin: the poll loop follows that channel's pointer
        if state.version is not None and self._served() == state.version:
            return
        try:
            self._deploy(state.version, explicit=True, allow_downgrade=state.allow_downgrade)
        except EdgeferryError as exc:
            # The pin stays: the poll loop retries the desired version (or channel) with its backoff.
            log.warning("desired %s %s not served yet: %s", state.model, state.target, exc)
            with self._lock:
                self.last_error = str(exc)

    def _clear(self) -> None:
        state = self.store.state
        if state is None or self.store.last_seq is None:
            return
        try:
            self.store.record(self.store.last_seq, None)
        except OSError as exc:
            log.error("cannot record the cleared desired state in %s: %s", self.store.path, exc.strerror or exc)
            return
        if state.model != self.model:
            return  # never held (see _in_force): no pin of ours to release
        log.info("desired state cleared; releasing the hold on %s", state.target)
        self._hold(None)

    def _hold(self, version: int | None) -> None:
        try:
            self._pin({"sync.pinned_version": version})
        except EdgeferryError as exc:
            log.warning("cannot pin the desired version (%s); deploying it without a pin", exc)
