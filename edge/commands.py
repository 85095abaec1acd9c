"""Inbound commands on cmd/<name>: authenticate, validate, run the agent's handler off the network thread, reply
on cmd/<name>/reply with the request id and ok or an error.

Anyone who can publish on cmd/ can cause a refusal: refusals are logged through a RefusalLog (one line per sender
and reason per minute plus a count), and a reply carries only a request id that is valid text, so no message can
grow the log or stop the reply.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.command_auth import Admitted, CommandAuth
from edge.link.base import Link
from edge.refusal_log import RefusalLog, printable
from edge.supervise import Health, spawn
from edge.telemetry import EnvelopeFactory
from shared.command_signing import MAX_ENVELOPE_BYTES, reply_id, text_request_id
from shared.errors import CommandRefused, EdgeferryError
from shared.payloads import (
    BenchmarkCommand,
    DeployCommand,
    PingCommand,
    ReplyPayload,
    RollbackCommand,
    SetConfigCommand,
    parse_command,
)
from shared.topics import COMMANDS, DeviceTopics

log = logging.getLogger(__name__)

Command = DeployCommand | RollbackCommand | SetConfigCommand | PingCommand | BenchmarkCommand
Handler = Callable[[Any], dict[str, Any]]
# Looking for the id of an oversized payload is worth it only up to a size that parses quickly.
_ID_SCAN_LIMIT = 2 * MAX_ENVELOPE_BYTES
# A reply's error text is for a person; longer text is cut (the full reason is in the device's log, once).
_MAX_ERROR = 1000
# Sender of a refusal that names no trusted key: unsigned, unknown keys and garbage share one rate limit.
NO_SENDER = "-"


def sender_of(payload: bytes, trusted: Mapping[str, object]) -> str:
    """The trusted key id a refused payload names, else NO_SENDER: untrusted names cannot open new log budgets."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        return NO_SENDER
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError):
        return NO_SENDER
    kid = raw.get("key_id") if isinstance(raw, dict) else None
    return kid if isinstance(kid, str) and kid in trusted else NO_SENDER


@dataclass(frozen=True)
class _Job:
    command: Command
    handler: Handler
    admitted: Admitted


class CommandRouter:
    """Subscribes cmd/+ and answers every command exactly once; one supervised worker runs handlers in order."""

    def __init__(
        self,
        link: Link,
        topics: DeviceTopics,
        envelopes: EnvelopeFactory,
        *,
        auth: CommandAuth,
        queue_size: int = 4,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self._topics = topics
        self._envelopes = envelopes
        self._auth = auth
        self._health = health or Health()
        self._handlers: dict[str, Handler] = {}
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._errors = 0
        self._refusals = RefusalLog(log, "commands", clock=clock)

    def register(self, name: str, handler: Handler) -> None:
        """Run handler(command) -> result dict for cmd/<name>; EdgeferryError from it becomes ok=false."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}; commands are {COMMANDS}")
        self._handlers[name] = handler

    @property
    def errors(self) -> int:
        """Refused, rejected or failed commands since start (telemetry cmd_errors)."""
        with self._lock:
            return self._errors

    def metrics(self) -> dict[str, float]:
        """Telemetry figures of the router and its authentication (a telemetry tick also writes refusal summaries)."""
        self._refusals.flush()
        return {"cmd_errors": float(self.errors), **self._auth.metrics()}

    def start(self) -> None:
        """Start the worker and subscribe (retained commands are never delivered: a stale deploy must not re-run)."""
        if self._auth.allow_unsigned:
            log.warning("accepting UNSIGNED commands (development): anyone who can publish on %s may command "
                        "this device; set device.allow_unsigned_commands: false in production", self._topics.cmd_filter)
        elif not self._auth.trusted:
            log.warning("no device.command_keys configured: every command will be refused; add the public key of "
                        "an operator key ('edgeferry keygen') to device.command_keys")
        self._stop.clear()
        self._worker = spawn("commands", self._run, self._stop, self._health)
        self._link.subscribe(self._topics.cmd_filter, self.on_message, retained=False)

    def stop(self, timeout_s: float = 10) -> None:
        """Let the worker finish the command it runs, then end it; queued commands still get answered."""
        if self._worker is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("command queue still full after %.0f s; not waiting for the worker", timeout_s)
            self._stop.set()
            return
        self._worker.join(timeout=timeout_s)
        self._stop.set()
        self._refusals.flush()
        if self._worker.is_alive():
            log.warning("a command handler is still running after %.0f s; leaving it behind", timeout_s)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Network-thread entry: authenticate and validate fast, queue the work, reply at once on any rejection."""
        name = self._topics.command_name(topic)
        if name is None:
            return
        if name not in COMMANDS:
            error = f"unknown command {name!r}; commands are {', '.join(COMMANDS)}"
            self._refused(payload, "unknown_command", error)
            self._reject(name, reply_id(payload) if len(payload) <= _ID_SCAN_LIMIT else None, error)
            return
        try:
            admitted = self._auth.admit(name, payload)
            command = parse_command(name, admitted.payload)
        except CommandRefused as exc:
            self._refused(payload, exc.reason, f"command {name} ({exc.request_id}): {exc}")
            self._reject(name, exc.request_id, str(exc))
            return
        except EdgeferryError as exc:
            rid = reply_id(payload) if len(payload) <= _ID_SCAN_LIMIT else None
            self._refused(payload, "malformed", f"command {name} ({rid}): {exc}")
            self._reject(name, rid, str(exc))
            return
        except (ValueError, RecursionError) as exc:
            # Deeply nested or odd JSON can fail below the schema layer; it is still just a bad command.
            error = f"malformed {name} command: {type(exc).__name__}"
            self._refused(payload, "malformed", error)
            self._reject(name, None, error)
            return
        handler = self._handlers.get(name)
        if handler is None:
            self._reject(name, command.id, f"command {name!r} is not supported by this agent")
            return
        try:
            self._queue.put_nowait(_Job(command, handler, admitted))
        except queue.Full:
            self._reject(name, command.id, "busy: another command is still running; retry later")

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        name, rid = job.command.name, job.command.id
        try:
            self._auth.commit(job.admitted, rid)
        except CommandRefused as exc:
            self._refusals.refused(job.admitted.key_id or NO_SENDER, exc.reason, f"command {name} ({rid}): {exc}")
            self._reject(name, rid, str(exc))
            return
        except EdgeferryError as exc:
            log.error("command %s (%s) not run: %s", name, rid, exc)
            self._reject(name, rid, str(exc))
            return
        try:
            result = job.handler(job.command)
            reply = self._envelopes.stamp(ReplyPayload, id=rid, command=name, ok=True, result=dict(result or {}))
            reply.model_dump_json()  # a result that cannot be sent is the handler's bug: report it, not crash
        except EdgeferryError as exc:
            log.warning("command %s (%s) failed: %s", name, rid, exc)
            self._reject(name, rid, str(exc))
            return
        except Exception as exc:  # a handler's bug is answered as such; the worker carries on
            log.exception("command %s (%s) crashed its handler", name, rid)
            self._reject(name, rid, f"internal error: {type(exc).__name__}")
            return
        self._send(name, reply)

    def _refused(self, payload: bytes, reason: str, message: str) -> None:
        self._refusals.refused(sender_of(payload, self._auth.trusted), reason, message)

    def _reject(self, name: str, rid: str | None, error: str) -> None:
        """Count and answer; the id only if it is text a reply can carry, the error made printable and bounded."""
        with self._lock:
            self._errors += 1
        reply = self._envelopes.stamp(ReplyPayload, id=text_request_id(rid), command=name, ok=False,
                                      error=printable(error, _MAX_ERROR, ascii_only=False))
        self._send(name, reply)

    def _send(self, name: str, reply: ReplyPayload) -> None:
        try:
            self._link.publish_json(self._topics.reply(name), reply)
        except EdgeferryError:
            log.exception("could not queue the reply to command %s (%s)", name, reply.id)
