"""Who may command this device: trusted command keys from local config, expiry, target and replay checks.

Only the local config names the keys (`device.command_keys`); a command's key id just selects one of them. The
last accepted sequence number per key is kept in `device.command_state_path` so a captured command cannot be
replayed after a restart. A sequence is recorded only after signature, expiry and target passed, and before the
command runs (check, then persist).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config import DeviceConfig
from edge.errors import CommandStateError
from shared.command_signing import (
    CLOCK_SKEW_MS,
    MAX_ENVELOPE_BYTES,
    MAX_SEQ,
    check_addressed,
    check_request_id,
    check_sequence,
    check_time,
    is_signed,
    load_json_object,
    parse_envelope,
    reply_id,
    verify_envelope,
)
from shared.errors import REFUSAL_REASONS, CommandError, CommandRefused, RefusalReason
from shared.object_store import atomic_write
from shared.signing import key_id, load_public_key

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True)
class Admitted:
    """A command that passed every check but the final replay check: plain command JSON plus who sent it."""

    payload: bytes
    key_id: str | None = None
    seq: int | None = None


class SequenceState:
    """Last accepted sequence per key id, in a small JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt: str | None = None
        self._last: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no command sequence state at %s yet; starting with none accepted", self.path)
            return
        except OSError as exc:
            self.corrupt = f"cannot read command sequence state {self.path}: {exc.strerror}"
            log.error("%s; refusing signed commands until it is readable", self.corrupt)
            return
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError("unexpected layout")
            if not isinstance(doc.get("last"), dict):
                raise ValueError("unexpected layout")
            last = doc["last"]
            if not all(isinstance(k, str) and type(v) is int and 0 < v <= MAX_SEQ for k, v in last.items()):
                raise ValueError("unexpected values")
        except (ValueError, RecursionError) as exc:
            self.corrupt = (
                f"command sequence state {self.path} is corrupt ({type(exc).__name__}); refusing signed commands "
                "until it is repaired or removed (removing it lets unexpired commands be replayed once)"
            )
            log.error("%s", self.corrupt)
            return
        self._last = dict(last)

    def last(self, key: str) -> int | None:
        """Last accepted sequence of a key, or None."""
        return self._last.get(key)

    def record(self, key: str, seq: int) -> None:
        """Persist a new last sequence for key, then remember it (a failed write changes nothing)."""
        new = {**self._last, key: seq}
        doc = {"version": STATE_VERSION, "last": dict(sorted(new.items()))}
        atomic_write(self.path, json.dumps(doc, indent=1).encode() + b"\n")
        self._last = new


def load_command_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted command keys by key id (the PEM loading is shared.signing's)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        key = load_public_key(path)
        keys[key_id(key)] = key
    return keys


class CommandAuth:
    """Decides whether a command may run; counts every refusal by reason. Thread-safe."""

    def __init__(
        self,
        *,
        fleet: str,
        device_id: str,
        trusted: Mapping[str, Ed25519PublicKey],
        state: SequenceState,
        groups: frozenset[str] = frozenset(),
        allow_unsigned: bool = False,
        skew_ms: int = CLOCK_SKEW_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet, self.device_id, self.groups = fleet, device_id, groups
        self.trusted = dict(trusted)
        self.state = state
        self.allow_unsigned = allow_unsigned
        self._skew_ms = skew_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: dict[RefusalReason, int] = dict.fromkeys(REFUSAL_REASONS, 0)

    @classmethod
    def from_config(cls, device: DeviceConfig) -> CommandAuth:
        """Keys and state from the device section of the local config (KeyFileError on a bad key file)."""
        return cls(
            fleet=device.fleet,
            device_id=device.device_id,
            trusted=load_command_keys(device.command_keys),
            state=SequenceState(device.command_state_path),
            groups=frozenset(device.groups),
            allow_unsigned=device.allow_unsigned_commands,
        )

    def admit(self, name: str, payload: bytes) -> Admitted:
        """Network-thread check of a cmd/<name> payload (no I/O): CommandRefused or CommandError if it may not run."""
        try:
            return self._admit(name, payload)
        except CommandRefused as exc:
            self._count(exc)
            raise

    def _admit(self, name: str, payload: bytes) -> Admitted:
        if len(payload) > MAX_ENVELOPE_BYTES:
            raise CommandError(f"command payload is {len(payload)} bytes, over the {MAX_ENVELOPE_BYTES} limit")
        doc = load_json_object(payload)
        if not is_signed(doc):
            if self.allow_unsigned:
                rid = doc.get("id")
                if isinstance(rid, str):  # a missing or non-string id is the schema's to refuse
                    try:
                        check_request_id(rid)
                    except ValueError as exc:
                        raise CommandError(f"bad {name} command: {exc}") from exc
                return Admitted(payload)
            raise CommandRefused(
                "unsigned", "unsigned command refused: this device accepts only commands signed by a key in its "
                "device.command_keys (send them with 'edgeferry cmd ... --command-key KEY')", reply_id(payload),
            )
        envelope = parse_envelope(doc)
        body = verify_envelope(envelope, self.trusted)
        check_addressed(body, name, self.fleet, self.device_id, self.groups)
        check_time(body, int(self._clock() * 1000), self._skew_ms)
        with self._lock:
            self._check_state(body.id)
            check_sequence(body, envelope.key_id, self.state.last(envelope.key_id))
        return Admitted(body.command_payload(), envelope.key_id, body.seq)

    def commit(self, admitted: Admitted, request_id: str | None) -> None:
        """Worker-thread final replay check and persist, before the command runs; refuse if either fails."""
        if admitted.key_id is None or admitted.seq is None:
            return
        with self._lock:
            try:
                self._check_state(request_id)
                last = self.state.last(admitted.key_id)
                if last is not None and admitted.seq <= last:
                    raise CommandRefused(
                        "replayed", f"replayed command: sequence {admitted.seq} from key {admitted.key_id} is not "
                        f"above the last accepted {last}", request_id,
                    )
            except CommandRefused as exc:
                self._count_locked(exc)
                raise
            try:
                self.state.record(admitted.key_id, admitted.seq)
            except OSError as exc:
                raise CommandStateError(
                    f"cannot record the command sequence in {self.state.path}: {exc.strerror or exc}; "
                    "the command was not run"
                ) from exc

    def refused(self) -> dict[RefusalReason, int]:
        """Refusals since start, by reason."""
        with self._lock:
            return dict(self._refused)

    def metrics(self) -> dict[str, float]:
        """Telemetry figures: cmd_refused and cmd_refused_<reason>."""
        counts = self.refused()
        out = {f"cmd_refused_{reason}": float(n) for reason, n in counts.items()}
        out["cmd_refused"] = float(sum(counts.values()))
        return out

    def _check_state(self, request_id: str | None) -> None:
        if self.state.corrupt is not None:
            raise CommandRefused("state_corrupt", self.state.corrupt, request_id)

    def _count(self, exc: CommandRefused) -> None:
        with self._lock:
            self._count_locked(exc)

    def _count_locked(self, exc: CommandRefused) -> None:
        self._refused[exc.reason] += 1
