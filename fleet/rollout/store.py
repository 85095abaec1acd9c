"""The rollout tables' repository: reads, one-transaction changes guarded by the rollout's rev, the outbox."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from fleet.db.rollout_schema import ROLLOUT_TABLES, rollout_active, rollout_devices, rollout_events, rollouts
from fleet.db.schema import metadata
from fleet.errors import RolloutConflictError, StorageError, UnknownRolloutError
from fleet.rollout.plan import RolloutPlan

ACTIVE_STATES = ("running", "paused")
FINAL_STATES = ("completed", "failed", "aborted")


@dataclass(frozen=True)
class RolloutRow:
    """One rollout as stored."""

    id: str
    fleet: str
    group: str
    model: str
    version: int
    plan: RolloutPlan
    state: str
    stage_index: int
    stage_started_ms: int
    deadline_ms: int
    next_analysis_ms: int
    last_decision: str | None
    last_reason: str
    last_gates: list[dict[str, Any]]
    baseline: dict[str, Any]
    group_want: bool
    group_sent: bool
    created_ms: int
    updated_ms: int
    finished_ms: int | None
    rev: int

    @property
    def active(self) -> bool:
        """Running or paused: it holds its group."""
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class DeviceRow:
    """One device of a rollout: when it was assigned, how it fared, and the desired state it should get."""

    device_id: str
    stage_index: int
    assigned_ms: int
    prior_version: int | None
    prior_override: bool
    restarts_base: int
    converged_ms: int | None
    state: str
    fail_kind: str | None
    reason: str
    want_action: str
    want_version: int | None
    want_downgrade: bool
    want_serial: int
    sent_serial: int

    @property
    def unsent(self) -> bool:
        """Its latest desired state has not been handed to the publisher yet."""
        return self.want_serial > self.sent_serial


@dataclass(frozen=True)
class EventRow:
    """One audit-log entry: a transition and the figures it was decided on."""

    id: int
    ts_ms: int
    kind: str
    stage_index: int
    actor: str
    reason: str
    figures: dict[str, Any]


@dataclass
class Change:
    """Everything one decision writes, applied in one transaction or not at all."""

    rollout: dict[str, Any] = field(default_factory=dict)
    new_devices: list[dict[str, Any]] = field(default_factory=list)
    device_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    release_group: bool = False

    def event(self, kind: str, stage_index: int, actor: str, reason: str, figures: Mapping[str, Any] | None = None
              ) -> None:
        """Add an audit-log entry."""
        self.events.append({"kind": kind, "stage_index": stage_index, "actor": actor, "reason": reason,
                            "figures": dict(figures or {})})

    def want(self, device_id: str, action: str, version: int | None, downgrade: bool, serial: int,
             **more: Any) -> None:
        """Queue a desired state for a device (and any other column changes)."""
        self.device_updates.setdefault(device_id, {}).update(
            want_action=action, want_version=version, want_downgrade=downgrade, want_serial=serial, **more
        )

    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.rollout or self.new_devices or self.device_updates or self.events or self.release_group)


def _rollout(r: Any) -> RolloutRow:
    return RolloutRow(
        id=r.id, fleet=r.fleet, group=r.group_name, model=r.model, version=int(r.version),
        plan=RolloutPlan.model_validate(r.plan), state=r.state, stage_index=r.stage_index,
        stage_started_ms=r.stage_started_ms, deadline_ms=r.deadline_ms, next_analysis_ms=r.next_analysis_ms,
        last_decision=r.last_decision, last_reason=r.last_reason or "", last_gates=list(r.last_gates or []),
        baseline=dict(r.baseline or {}), group_want=bool(r.group_want), group_sent=bool(r.group_sent),
        created_ms=r.created_ms, updated_ms=r.updated_ms, finished_ms=r.finished_ms, rev=r.rev,
    )


def _device(r: Any) -> DeviceRow:
    return DeviceRow(
        device_id=r.device_id, stage_index=r.stage_index, assigned_ms=r.assigned_ms,
        prior_version=r.prior_version, prior_override=bool(r.prior_override), restarts_base=r.restarts_base,
        converged_ms=r.converged_ms, state=r.state, fail_kind=r.fail_kind,
        reason=r.reason or "", want_action=r.want_action, want_version=r.want_version,
        want_downgrade=bool(r.want_downgrade), want_serial=r.want_serial, sent_serial=r.sent_serial,
    )


class RolloutRepository:
    """Rollouts of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet
        self._ensure_tables()

    def _ensure_tables(self) -> None:
        try:
            metadata.create_all(self._engine, tables=list(ROLLOUT_TABLES))
        except DBAPIError as exc:
            if "already exists" in str(exc.orig) or "duplicate key" in str(exc.orig):
                return self._ensure_tables()  # another worker created them at the same moment
            raise StorageError(f"cannot create the rollout tables: {str(exc.orig).strip().splitlines()[0]}") from exc

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except (IntegrityError, _Conflict):
            raise
        except DBAPIError as exc:
            raise StorageError(f"rollout database: {str(exc.orig).strip().splitlines()[0]}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"rollout database: {exc}") from exc

    def create(self, values: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Insert a rollout and claim its group; RolloutConflictError when the group has one running."""
        try:
            with self._begin() as conn:
                conn.execute(insert(rollout_active).values(fleet=self.fleet, group_name=values["group_name"],
                                                           rollout_id=values["id"]))
                conn.execute(insert(rollouts).values(fleet=self.fleet, **values))
                conn.execute(insert(rollout_events).values(rollout_id=values["id"], **event))
        except IntegrityError as exc:
            running = self.active_for_group(values["group_name"])
            which = f" ({running.id}, {running.model} v{running.version}, {running.state})" if running else ""
            raise RolloutConflictError(
                f"group {values['group_name']!r} of fleet {self.fleet!r} already has a rollout running{which}; "
                "abort it or wait for it to finish"
            ) from exc

    def apply(self, row: RolloutRow, change: Change, now_ms: int) -> bool:
        """Write change iff the rollout is still at the rev it was read at; False (nothing written) otherwise."""
        if change.empty():
            return True
        try:
            with self._begin() as conn:
                done = conn.execute(
                    update(rollouts).where(rollouts.c.id == row.id, rollouts.c.rev == row.rev)
                    .values(rev=row.rev + 1, updated_ms=now_ms, **change.rollout)
                ).rowcount
                if not done:
                    raise _Conflict
                for values in change.new_devices:
                    conn.execute(insert(rollout_devices).values(rollout_id=row.id, **values))
                rd = rollout_devices.c
                for device_id, values in change.device_updates.items():
                    conn.execute(update(rollout_devices).where(rd.rollout_id == row.id, rd.device_id == device_id)
                                 .values(**values))
                for ev in change.events:
                    conn.execute(insert(rollout_events).values(rollout_id=row.id, ts_ms=now_ms, **ev))
                if change.release_group:
                    ra = rollout_active.c
                    conn.execute(delete(rollout_active).where(ra.fleet == self.fleet, ra.group_name == row.group,
                                                              ra.rollout_id == row.id))
        except _Conflict:
            return False
        return True

    def get(self, rollout_id: str) -> RolloutRow:
        """One rollout; UnknownRolloutError when there is none with that id."""
        with self._engine.connect() as conn:
            r = conn.execute(select(rollouts).where(rollouts.c.fleet == self.fleet, rollouts.c.id == rollout_id)
                             ).first()
        if r is None:
            raise UnknownRolloutError(f"no rollout {rollout_id!r} in fleet {self.fleet!r}; "
                                      "'edgeferry fleet rollout status' lists the latest ones")
        return _rollout(r)

    def active(self) -> list[RolloutRow]:
        """Running and paused rollouts, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(rollouts).where(rollouts.c.fleet == self.fleet,
                                                       rollouts.c.state.in_(ACTIVE_STATES))
                                .order_by(rollouts.c.created_ms)).all()
        return [_rollout(r) for r in rows]

    def active_for_group(self, group: str) -> RolloutRow | None:
        """The group's running or paused rollout, if any."""
        ra = rollout_active.c
        with self._engine.connect() as conn:
            rid = conn.execute(select(ra.rollout_id).where(ra.fleet == self.fleet, ra.group_name == group)).scalar()
        return None if rid is None else self.get(rid)

    def latest(self, group: str | None = None, limit: int = 20) -> list[RolloutRow]:
        """The newest rollouts (of one group), newest first."""
        q = select(rollouts).where(rollouts.c.fleet == self.fleet)
        if group is not None:
            q = q.where(rollouts.c.group_name == group)
        with self._engine.connect() as conn:
            rows = conn.execute(q.order_by(rollouts.c.created_ms.desc(), rollouts.c.id).limit(limit)).all()
        return [_rollout(r) for r in rows]

    def devices(self, rollout_id: str) -> list[DeviceRow]:
        """The rollout's devices, by id."""
        rd = rollout_devices.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(rollout_devices).where(rd.rollout_id == rollout_id).order_by(rd.device_id)
                                ).all()
        return [_device(r) for r in rows]

    def events(self, rollout_id: str) -> list[EventRow]:
        """The audit log of a rollout, oldest first."""
        re_ = rollout_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(rollout_events).where(re_.rollout_id == rollout_id).order_by(re_.id)).all()
        return [EventRow(r.id, r.ts_ms, r.kind, r.stage_index, r.actor, r.reason, dict(r.figures or {}))
                for r in rows]

    def unsent(self) -> list[tuple[RolloutRow, DeviceRow]]:
        """Devices whose latest desired state is not published yet, with their rollout."""
        rd = rollout_devices.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(rollout_devices).join(rollouts, rollouts.c.id == rd.rollout_id)
                .where(rollouts.c.fleet == self.fleet, rd.want_serial > rd.sent_serial)
                .order_by(rd.rollout_id, rd.device_id)
            ).all()
        cache: dict[str, RolloutRow] = {}
        out = []
        for r in rows:
            if r.rollout_id not in cache:
                cache[r.rollout_id] = self.get(r.rollout_id)
            out.append((cache[r.rollout_id], _device(r)))
        return out

    def ended_with_pins(self) -> list[RolloutRow]:
        """Failed or aborted rollouts with devices pinned to their prior version that may be lifted."""
        rd = rollout_devices.c
        with self._engine.connect() as conn:
            ids = conn.execute(
                select(rollouts.c.id).distinct().join(rollout_devices, rd.rollout_id == rollouts.c.id)
                .where(rollouts.c.fleet == self.fleet, rollouts.c.state.in_(("failed", "aborted")),
                       rd.state.in_(("rolled_back", "failed")), rd.want_action == "set",
                       rd.prior_override.is_(False))
            ).scalars().all()
        return [self.get(i) for i in ids]

    def mark_sent(self, rollout_id: str, device_id: str, serial: int) -> None:
        """Record that the device's desired state up to serial was handed to the publisher."""
        rd = rollout_devices.c
        with self._begin() as conn:
            conn.execute(update(rollout_devices).where(and_(rd.rollout_id == rollout_id, rd.device_id == device_id,
                                                            rd.sent_serial < serial)).values(sent_serial=serial))

    def group_unsent(self) -> list[RolloutRow]:
        """Completed rollouts whose group desired state is not written yet."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(rollouts).where(rollouts.c.fleet == self.fleet, rollouts.c.group_want.is_(True),
                                                       rollouts.c.group_sent.is_(False))).all()
        return [_rollout(r) for r in rows]

    def mark_group_sent(self, rollout_id: str) -> None:
        """Record that the group desired state of a completed rollout was written."""
        with self._begin() as conn:
            conn.execute(update(rollouts).where(rollouts.c.id == rollout_id).values(group_sent=True))

    def count_unsent(self, rollout_id: str) -> int:
        """Devices of one rollout still waiting for their desired state to be published."""
        rd = rollout_devices.c
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(rollout_devices)
                                    .where(rd.rollout_id == rollout_id, rd.want_serial > rd.sent_serial)).scalar()
                       or 0)


class _Conflict(Exception):
    """The rollout changed since it was read: another writer won; nothing of this change was written."""
