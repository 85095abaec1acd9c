"""The device registry's pure logic: what one MQTT message does to a device record, and when a device is stale.

No I/O: the ingest applies these functions to records it reads from and writes back to the database.
Times are Unix ms. `received_ms` is the fleet's clock when a message arrived; payload `ts` is the device's clock,
used only to order a device's own messages (boots) and to date retained messages, which may be old.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from shared.payloads import Envelope, ModelInfo, StatePayload, TelemetryPayload
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED

Status = Literal["online", "stopped", "offline", "stale", "unknown"]
REPORTED = (STATUS_ONLINE, STATUS_STOPPED, STATUS_OFFLINE)
STATUSES: tuple[Status, ...] = ("online", "stopped", "offline", "stale", "unknown")
DEFAULT_TELEMETRY_INTERVAL_S = 5.0
STALE_INTERVALS = 3
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 86400.0
MAX_REFUSAL_TEXT = 256
# What the registry keeps of each further model a device serves: what the web app and the CLI show of it.
MODEL_FIELDS = frozenset({"name", "version", "variant", "precision", "backend", "device", "streams"})
_MODEL_DUMP = dict.fromkeys(MODEL_FIELDS, True)  # model_dump's `include` takes a set or a mapping, not a frozenset


@dataclass(frozen=True)
class TelemetrySample:
    """One telemetry message as the rollout gates read it: its device-clock time, flat figures and class counts."""

    ts_ms: int
    figures: dict[str, float]
    class_counts: dict[str, int] = field(default_factory=dict)
    boot_id: str = ""
    seq: int = 0
    # A live report's per-stream figures (validated by the contract), for fleet.db.streams; None otherwise.
    streams: dict[str, dict[str, float]] | None = None


@dataclass(frozen=True, slots=True)
class TelemetryReading:
    """What the registry and the gates use of a validated telemetry message (read by the pydantic model or by
    fleet.telemetry_reader's fast path, which builds this directly)."""

    device_id: str
    boot_id: str
    seq: int
    ts: int
    replayed: bool
    figures: dict[str, float]
    class_counts: dict[str, int]
    # The figure as sent (an int keeps its exact value), for the record's model_version.
    model_version: int | float | None = None
    # A multi-stream agent's per-stream figures (the fast reader leaves such reports to the model: None there).
    streams: dict[str, dict[str, float]] | None = None

    @classmethod
    def of(cls, payload: TelemetryPayload) -> TelemetryReading:
        """The reading of a payload the model validated."""
        extra = payload.model_extra or {}
        return cls(payload.device_id, payload.boot_id, payload.seq, payload.ts, payload.replayed, payload.figures(),
                   dict(payload.class_counts or {}), extra.get("model_version"), payload.streams)


@dataclass(frozen=True)
class DeviceRecord:
    """Everything the control plane knows about one device; `status` is as of the time it was read."""

    fleet: str
    device_id: str
    status: Status = "unknown"
    reported_status: Status = "unknown"
    groups: tuple[str, ...] = ()
    reported_groups: tuple[str, ...] = ()
    assigned_groups: tuple[str, ...] = ()
    boot_id: str | None = None
    boot_ts_ms: int | None = None
    restarts: int = 0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    status_ms: int | None = None
    state_ts_ms: int | None = None
    agent_version: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    model_variant: str | None = None
    model_backend: str | None = None
    # The main model's variant precision and the streams it serves (empty: every stream, or the single source).
    model_precision: str | None = None
    model_streams: tuple[str, ...] = ()
    hardware: dict[str, Any] = field(default_factory=dict)
    config_digest: str | None = None
    unsigned_commands: bool = False
    degraded: dict[str, str] = field(default_factory=dict)
    telemetry_interval_s: float | None = None
    last_telemetry_ms: int | None = None
    # Messages from this device refused at ingest (unparsable, out of range, or refused by the database), and why
    # the last one was; and messages shed unread because the device sent more than its share of the ingest queue.
    refused: int = 0
    last_refused: str | None = None
    last_refused_ms: int | None = None
    shed: int = 0
    # From the state payload: what moves the device ('latest': its channel's pointer, 'desired': only the fleet's
    # desired state) and the pointer channel it follows; None: an agent older than those fields.
    follow: str | None = None
    channel: str | None = None
    # Further models the device serves beside model_name (its config's `models:`), each a dict of MODEL_FIELDS
    # (unset ones left out; `streams` lists the streams it serves), in the order the state payload lists them.
    models: tuple[dict[str, Any], ...] = ()
    rev: int = 0

    def with_status_at(self, now_ms: int) -> DeviceRecord:
        """The same record with `status` as of now_ms (online turns stale after 3 silent intervals)."""
        return evolve(self, status=effective_status(self, now_ms))


_FIELDS = frozenset(f.name for f in fields(DeviceRecord))


def evolve(record: DeviceRecord, **changes: Any) -> DeviceRecord:
    """dataclasses.replace without its walk over every field and __init__ (DeviceRecord has no __post_init__):
    ingest applies several per message, and replace was a third of its time."""
    unknown = changes.keys() - _FIELDS
    if unknown:
        raise TypeError(f"DeviceRecord has no field {sorted(unknown)[0]!r}")
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__)
    new.__dict__.update(changes)
    return new


def served_models(models: Iterable[ModelInfo]) -> tuple[dict[str, Any], ...]:
    """Further models as the record keeps them: the contract validated them, so only MODEL_FIELDS are picked."""
    return tuple(m.model_dump(include=_MODEL_DUMP, exclude_none=True) for m in models)


def new_record(fleet: str, device_id: str) -> DeviceRecord:
    """A device seen for the first time."""
    return DeviceRecord(fleet=fleet, device_id=device_id)


def merged_groups(reported: tuple[str, ...], assigned: tuple[str, ...]) -> tuple[str, ...]:
    """A device's groups: its own config's plus those assigned in the control plane, sorted, once each."""
    return tuple(sorted(set(reported) | set(assigned)))


def stale_after_ms(record: DeviceRecord) -> int:
    """Silence after which an online device counts as stale: 3 of its telemetry intervals (a stored interval
    outside what ingest admits, e.g. written by an older version, counts as the default)."""
    interval = record.telemetry_interval_s
    if not isinstance(interval, int | float) or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        interval = DEFAULT_TELEMETRY_INTERVAL_S
    return int(STALE_INTERVALS * interval * 1000)


def effective_status(record: DeviceRecord, now_ms: int) -> Status:
    """online / stopped / offline as reported, but stale when an online device has been silent too long."""
    if record.reported_status != STATUS_ONLINE:
        return record.reported_status
    if record.last_seen_ms is None or now_ms - record.last_seen_ms > stale_after_ms(record):
        return "stale"
    return "online"


def _seen(record: DeviceRecord, received_ms: int, ts_ms: int | None, retained: bool) -> DeviceRecord:
    """Advance last seen: a live message counts from its arrival, a retained one only from its own (capped) ts."""
    when = received_ms if not retained else (min(ts_ms, received_ms) if ts_ms is not None else None)
    first = record.first_seen_ms if record.first_seen_ms is not None else received_ms
    if when is None or (record.last_seen_ms is not None and when <= record.last_seen_ms):
        return evolve(record, first_seen_ms=first)
    return evolve(record, first_seen_ms=first, last_seen_ms=when)


def _boot(record: DeviceRecord, env: Envelope | TelemetryReading) -> DeviceRecord:
    """A new boot id from a newer live message is a restart; replayed or older-boot messages change nothing."""
    if env.replayed:
        return record
    if record.boot_id is None:
        return evolve(record, boot_id=env.boot_id, boot_ts_ms=env.ts)
    if env.boot_id == record.boot_id:
        if record.boot_ts_ms is None or env.ts < record.boot_ts_ms:
            return evolve(record, boot_ts_ms=env.ts)
        return record
    if record.boot_ts_ms is not None and env.ts <= record.boot_ts_ms:
        return record
    return evolve(record, boot_id=env.boot_id, boot_ts_ms=env.ts, restarts=record.restarts + 1)


def apply_status(record: DeviceRecord, text: str, received_ms: int, retained: bool) -> DeviceRecord:
    """The retained status topic: online, stopped, or offline (the Last Will)."""
    if text not in REPORTED:
        raise ValueError(f"status is {text[:40]!r}, not one of {', '.join(REPORTED)}")
    status: Status = text  # type: ignore[assignment]
    rec = evolve(record, reported_status=status, status_ms=received_ms if not retained else record.status_ms)
    return _seen(rec, received_ms, None, retained)


def apply_state(record: DeviceRecord, state: StatePayload, received_ms: int, retained: bool) -> DeviceRecord:
    """The retained state payload: what the device runs, its hardware, groups and telemetry interval."""
    if record.state_ts_ms is not None and state.ts < record.state_ts_ms and state.boot_id == record.boot_id:
        return _seen(record, received_ms, state.ts, retained)
    reported = tuple(sorted(set(getattr(state, "groups", None) or ())))
    interval = getattr(state, "telemetry_interval_s", None)
    rec = evolve(
        _boot(record, state),
        state_ts_ms=state.ts,
        agent_version=state.agent_version,
        model_name=state.model.name,
        model_version=state.model.version,
        model_variant=state.model.variant,
        model_backend=state.model.backend,
        model_precision=state.model.precision,
        model_streams=tuple(state.model.streams),
        hardware=dict(state.hardware),
        config_digest=state.config_digest,
        unsigned_commands=state.unsigned_commands,
        degraded=dict(state.degraded),
        reported_groups=reported,
        groups=merged_groups(reported, record.assigned_groups),
        telemetry_interval_s=float(interval) if interval else record.telemetry_interval_s,
        follow=getattr(state, "follow", None),
        channel=getattr(state, "channel", None),
        models=served_models(state.models),
    )
    return _seen(rec, received_ms, state.ts, retained)


def _reading(payload: TelemetryPayload | TelemetryReading) -> TelemetryReading:
    return payload if isinstance(payload, TelemetryReading) else TelemetryReading.of(payload)


def telemetry_sample(payload: TelemetryPayload | TelemetryReading) -> TelemetrySample:
    """The flat numeric figures and class counts of a telemetry message."""
    r = _reading(payload)
    return TelemetrySample(ts_ms=r.ts, figures=r.figures, class_counts=dict(r.class_counts), boot_id=r.boot_id,
                           seq=r.seq, streams=None if r.replayed else r.streams)


def apply_telemetry(record: DeviceRecord, payload: TelemetryPayload | TelemetryReading,
                    received_ms: int) -> DeviceRecord:
    """A telemetry message: the device is alive now (unless replayed from its outbox), and maybe rebooted."""
    payload = _reading(payload)
    rec = _boot(record, payload)
    version = payload.model_version
    if not payload.replayed and isinstance(version, (int, float)) and version > 0:
        rec = evolve(rec, model_version=int(version))
    if payload.replayed:
        return _seen(rec, received_ms, payload.ts, retained=True)
    return evolve(_seen(rec, received_ms, payload.ts, retained=False), last_telemetry_ms=received_ms)


def count_refused(record: DeviceRecord, why: str, received_ms: int) -> DeviceRecord:
    """One more message of this device refused at ingest; the reason is kept (bounded) for the operator."""
    first = record.first_seen_ms if record.first_seen_ms is not None else received_ms
    return evolve(record, refused=record.refused + 1, last_refused=why[:MAX_REFUSAL_TEXT],
                   last_refused_ms=received_ms, first_seen_ms=first)


def count_shed(record: DeviceRecord, n: int, received_ms: int) -> DeviceRecord:
    """n more messages of this device shed unread: it sent more than its share of the ingest queue."""
    first = record.first_seen_ms if record.first_seen_ms is not None else received_ms
    return evolve(record, shed=record.shed + n, first_seen_ms=first)


def with_assignments(record: DeviceRecord, assigned: tuple[str, ...]) -> DeviceRecord:
    """The record with control-plane group assignments merged in."""
    assigned = tuple(sorted(set(assigned)))
    return evolve(record, assigned_groups=assigned, groups=merged_groups(record.reported_groups, assigned))
