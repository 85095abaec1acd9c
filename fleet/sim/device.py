"""One simulated agent's logic, apart from I/O: what it answers to a command or a desired state, what it reports.

It checks signed commands and desired state with the shared code a real agent uses (key ids, signature, target,
expiry, per-key sequence; desired seq above the last applied) and builds its payloads with the shared schemas.
The runner owns the MQTT client and the clock, and calls `on_command`/`on_desired` and the `*_payload` builders.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleet.sim.behaviour import Behaviour, window
from fleet.sim.detector import DetectorSim
from fleet.sim.models import SideModel
from fleet.sim.sensor import SensorSim
from fleet.sim.streams import StreamsSim
from shared.command_signing import (
    check_addressed,
    check_sequence,
    check_time,
    is_signed,
    load_json_object,
    parse_envelope,
    reply_id,
    verify_envelope,
)
from shared.desired_state import check_desired_sequence, is_cleared, verify_desired
from shared.errors import CommandError, CommandRefused
from shared.object_events import ObjectEventPayload, ObjectTopics, SnapshotPayload
from shared.payloads import (
    BenchmarkCommand,
    DeployCommand,
    ModelInfo,
    PingCommand,
    RollbackCommand,
    StatePayload,
    parse_command,
)
from shared.sensor_events import AnomalyAlertPayload, SensorTopics
from shared.topics import DeviceTopics
from shared.version import __version__

AGENT_VERSION = f"{__version__}+sim"


@dataclass
class Action:
    """What the runner must do after a message: publish a reply, start an install, both or nothing."""

    reply: tuple[str, bytes] | None = None
    install: tuple[int, bool] | None = None  # (version, allow_downgrade)
    side_install: tuple[str, int] | None = None  # (model, version): a further model's install


@dataclass
class SimDevice:
    """State of one simulated agent; every method is called from the runner's loop thread."""

    topics: DeviceTopics
    behaviour: Behaviour
    model: str
    version: int
    groups: list[str]
    trusted: Mapping[str, Ed25519PublicKey]
    labels: list[str]
    telemetry_interval_s: float
    fps: float = 10.0
    seed: int = 0
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    initial_version: int = 0
    highest: int = 0
    desired_version: int | None = None
    seq: int = 0
    frames: int = 0
    restarts: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    installing: int | None = None
    online: bool = False
    # Set for a simulated sensor device: it also reports anomaly figures and publishes alerts (fleet.sim.sensor).
    sensor: SensorSim | None = None
    # Set for a simulated detector: it also reports zone counts and publishes object events and snapshots.
    detector: DetectorSim | None = None
    # Set for a multi-stream agent: per-stream figures under telemetry's `streams` (fleet.sim.streams).
    streams: StreamsSim | None = None
    # Further models a multi-stream agent serves on some of its streams (its `models:`), by name.
    side: dict[str, SideModel] = field(default_factory=dict)
    _alerts: list[tuple[str, bytes]] = field(default_factory=list)
    _cmd_seq: dict[str, int] = field(default_factory=dict)
    _desired_seq: int | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.initial_version = self.initial_version or self.version
        self.highest = max(self.highest, self.version)
        self._rng = random.Random(f"{self.seed}:{self.topics.device_id}")
        for name in ("cmd_errors", "cmd_refused", "package_rejects", "thread_errors", "drops", "desired_refused",
                     "desired_applied", "swaps"):
            self.counters.setdefault(name, 0.0)

    @property
    def device_id(self) -> str:
        """The device id (topic level 3)."""
        return self.topics.device_id

    # -- inbound ----------------------------------------------------------------------------------------------

    def on_command(self, name: str, payload: bytes, now_ms: int) -> Action:
        """A cmd/<name> message: verify as an agent does, then deploy/rollback/ping; every command gets a reply."""
        try:
            doc = load_json_object(payload)
            if not is_signed(doc):
                raise CommandRefused("unsigned", "unsigned command refused: this simulated device accepts only "
                                     "signed commands", reply_id(payload))
            envelope = parse_envelope(doc)
            body = verify_envelope(envelope, self.trusted)
            check_addressed(body, name, self.topics.fleet, self.device_id, frozenset(self.groups))
            check_time(body, now_ms)
            check_sequence(body, envelope.key_id, self._cmd_seq.get(envelope.key_id))
            self._cmd_seq[envelope.key_id] = body.seq
            command = parse_command(name, body.command_payload())
        except CommandRefused as exc:
            self.counters["cmd_refused"] += 1
            self.counters[f"cmd_refused_{exc.reason}"] = self.counters.get(f"cmd_refused_{exc.reason}", 0.0) + 1
            return self._reject(name, exc.request_id, str(exc), now_ms)
        except CommandError as exc:
            return self._reject(name, reply_id(payload), str(exc), now_ms)
        if isinstance(command, DeployCommand | RollbackCommand | BenchmarkCommand) and command.model not in (
                None, self.model):
            return self._on_side_command(name, command, now_ms)
        if isinstance(command, DeployCommand):
            refused = _deploy_refusal(command, self.model, self.highest)
            if refused is not None:
                return self._reject(name, command.id, refused, now_ms)
            assert command.version is not None
            return Action(self._reply(name, command.id, True, {"version": command.version, "changed": True}, now_ms),
                          (command.version, command.allow_downgrade))
        if isinstance(command, RollbackCommand):
            if self.version <= 1:
                return self._reject(name, command.id, "no earlier version installed", now_ms)
            return Action(self._reply(name, command.id, True, {"version": self.version - 1}, now_ms),
                          (self.version - 1, True))
        if isinstance(command, PingCommand):
            result = {"model": self.model_info().model_dump(), "uptime_s": 0.0}
            return Action(self._reply(name, command.id, True, result, now_ms))
        return self._reject(name, command.id, f"command {name!r} is not supported by the simulator", now_ms)

    def _on_side_command(self, name: str, command: DeployCommand | RollbackCommand | BenchmarkCommand,
                         now_ms: int) -> Action:
        """A command naming a further model: it moves that model alone; an unknown model is refused."""
        side = self.side.get(command.model or "")
        if side is None:
            served = ", ".join([self.model, *self.side])
            return self._reject(name, command.id, f"this device serves no model {command.model!r} (it serves "
                                f"{served})", now_ms)
        if isinstance(command, DeployCommand):
            refused = _deploy_refusal(command, side.name, side.highest)
            if refused is not None:
                return self._reject(name, command.id, refused, now_ms)
            assert command.version is not None
            target = command.version
        elif isinstance(command, RollbackCommand):
            if side.version <= 1:
                return self._reject(name, command.id, f"no earlier version of {side.name} installed", now_ms)
            target = side.version - 1
        else:
            return self._reject(name, command.id, f"command {name!r} is not supported by the simulator", now_ms)
        result = {"model": side.name, "version": target, "changed": target != side.version}
        return Action(self._reply(name, command.id, True, result, now_ms), side_install=(side.name, target))

    def serve_side(self, model: str, version: int) -> None:
        """A further model's install finished: serve `version` of it (the main model stays)."""
        self.side[model].serve(version)
        self.counters["swaps"] += 1

    def on_desired(self, payload: bytes) -> Action:
        """A retained desired message: verified like an agent does; the same seq again is the state in force."""
        if is_cleared(payload):
            self.desired_version = None
            return Action()
        try:
            state = verify_desired(payload, self.trusted, self.topics.fleet, self.device_id)
            if state.seq != self._desired_seq:
                check_desired_sequence(state, self._desired_seq)
                self._desired_seq = state.seq
                self.counters["desired_applied"] += 1
        except CommandError:
            self.counters["desired_refused"] += 1
            return Action()
        self.desired_version = state.version
        if state.version is None:
            return Action()  # a channel desired state: the simulator has no store of pointers to follow
        if state.version == self.version or state.version == self.installing:
            return Action()
        if state.version < self.highest and not state.allow_downgrade:
            self.counters["package_rejects"] += 1
            return Action()
        return Action(install=(state.version, state.allow_downgrade))

    def install_outcome(self, version: int) -> str:
        """Decide how an install of `version` ends for this behaviour: 'serve', 'crash' or 'stuck'."""
        new = version > self.initial_version
        if new and self.behaviour == "crash_on_install":
            return "crash"
        if new and self.behaviour == "never_converging":
            return "stuck"
        return "serve"

    def serve(self, version: int) -> None:
        """The install finished: serve `version`."""
        self.version = version
        self.highest = max(self.highest, version)
        self.counters["swaps"] += 1
        self.installing = None

    def crash(self) -> None:
        """The install crashed the agent: counted reject, a restart with a new boot id, old version kept."""
        self.counters["package_rejects"] += 1
        self.restarts += 1
        self.boot_id = uuid.uuid4().hex
        self.seq = 0
        self.installing = None

    # -- outbound ---------------------------------------------------------------------------------------------

    def model_info(self) -> ModelInfo:
        """The served model as the state payload names it (with its streams once further models share them)."""
        return ModelInfo(name=self.model, version=self.version, variant="model.fp32.onnx", precision="fp32",
                         backend="onnxruntime", device="cpu", streams=self._main_streams() if self.side else [])

    def _main_streams(self) -> list[str]:
        taken = {s for m in self.side.values() for s in m.streams}
        return [s for s in (self.streams.names if self.streams else []) if s not in taken]

    def _stream_versions(self) -> dict[str, int]:
        """Stream -> the version of the model serving it."""
        out = dict.fromkeys(self.streams.names if self.streams else [], self.version)
        for m in self.side.values():
            out.update(dict.fromkeys(m.streams, m.version))
        return out

    def _envelope(self, now_ms: int) -> dict[str, Any]:
        seq = self.seq
        self.seq += 1
        return {"schema_version": 1, "device_id": self.device_id, "boot_id": self.boot_id, "seq": seq, "ts": now_ms}

    def state_payload(self, now_ms: int) -> bytes:
        """Retained state, through the shared schema (it is rare, so validation costs nothing that matters)."""
        state = StatePayload(
            **self._envelope(now_ms), agent_version=AGENT_VERSION, model=self.model_info(),
            hardware={"cpu_features": ["avx2"], "backends": "onnxruntime", "simulated": True},
            config_digest=f"sim-{self.behaviour}", groups=list(self.groups),
            telemetry_interval_s=self.telemetry_interval_s, desired_version=self.desired_version,
            models=[m.info() for m in self.side.values()],
        )
        return state.model_dump_json().encode()

    def telemetry_payload(self, now_ms: int, uptime_s: float) -> bytes:
        """One window's telemetry: the agent's figures (names from shared.metrics) and class_counts."""
        results = max(1, round(self.fps * self.telemetry_interval_s))
        f = window(self.behaviour, self.version > self.initial_version, results, self.labels, self._rng)
        self.frames += results
        doc: dict[str, Any] = {
            **self._envelope(now_ms), "fps": self.fps, "frames": float(self.frames), "queue_depth": 0.0,
            "e2e_ms_p50": f.e2e_ms_p95 * 0.7, "e2e_ms_p95": f.e2e_ms_p95, "e2e_ms_p99": f.e2e_ms_p95 * 1.2,
            "infer_ms_p95": f.e2e_ms_p95 * 0.6, "model_version": float(self.version), "cpu_pct": 12.0,
            "rss_mb": 80.0, "uptime_s": uptime_s, "outbox_depth": 0.0, "results_window": float(results),
            "conf_mean": f.conf_mean, "low_conf_share": f.low_conf_share,
            "desired_version": float(self.desired_version or 0), **self.counters,
            "class_counts": f.class_counts,
        }
        if self.sensor is not None:
            figures, events = self.sensor.tick(self.version > self.initial_version, self.telemetry_interval_s, now_ms)
            doc.update(figures)
            topic = SensorTopics(self.topics).alerts
            for event in events:
                alert = AnomalyAlertPayload(**self._envelope(now_ms), **event, model_version=self.version)
                self._alerts.append((topic, alert.model_dump_json().encode()))
        if self.detector is not None:
            self._detect(doc, now_ms)
        if self.streams is not None:
            doc["streams"] = self.streams.tick(self.telemetry_interval_s, self._stream_versions())
        return json.dumps(doc, separators=(",", ":")).encode()

    def _detect(self, doc: dict[str, Any], now_ms: int) -> None:
        """A detector's window: its figures and zone counts into the report, its object messages queued (through
        the wire contract's schemas, so the simulator never sends what an agent could not)."""
        assert self.detector is not None
        figures, zones, messages = self.detector.tick(self.telemetry_interval_s, now_ms)
        doc.update(figures)
        doc["zone_counts"] = zones
        topics = ObjectTopics(self.topics)
        for kind, body in messages:
            if kind == "event":
                event = ObjectEventPayload(**self._envelope(now_ms), **body)
                self._alerts.append((topics.events, event.model_dump_json().encode()))
            else:
                snap = SnapshotPayload(**self._envelope(now_ms), **body)
                self._alerts.append((topics.snapshot(snap.object_id), snap.model_dump_json().encode()))

    def take_alerts(self) -> list[tuple[str, bytes]]:
        """Alert, object event and snapshot messages (topic, payload) produced since the last call, oldest first
        (sensor devices and detectors only)."""
        out, self._alerts = self._alerts, []
        return out

    def _reply(self, name: str, rid: str | None, ok: bool, result: dict[str, Any] | None, now_ms: int,
               error: str | None = None) -> tuple[str, bytes]:
        doc = {**self._envelope(now_ms), "replayed": False, "id": rid, "command": name, "ok": ok, "error": error,
               "result": result or {}}
        return self.topics.reply(name), json.dumps(doc, separators=(",", ":")).encode()

    def _reject(self, name: str, rid: str | None, error: str, now_ms: int) -> Action:
        self.counters["cmd_errors"] += 1
        return Action(self._reply(name, rid, False, None, now_ms, error))


def _deploy_refusal(command: DeployCommand, model: str, highest: int) -> str | None:
    """Why the simulator refuses a deploy of one of its models (as an agent would), or None."""
    if command.version is None:
        return "the simulator deploys named versions only"
    if command.version < highest and not command.allow_downgrade:
        return f"{model} v{command.version} is older than v{highest} already activated (anti-rollback)"
    return None
