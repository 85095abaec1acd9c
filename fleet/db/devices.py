"""Device rows and control-plane group assignments; records are read and written whole, guarded by a revision."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, select, update

from fleet.db.schema import devices, group_assignments
from fleet.db.upsert import insert_absent
from fleet.errors import StorageError
from fleet.registry import DeviceRecord, new_record, with_assignments

_COLUMNS = [c.name for c in devices.columns if c.name not in ("fleet", "device_id")]
_RECORD_FIELDS = {f.name for f in fields(DeviceRecord)}
MAX_UPDATE_ATTEMPTS = 20


# One compiled compare-and-set statement for every row: building a statement per row cost more than running it.
_CAS_UPDATE = (
    update(devices)
    .where(devices.c.fleet == bindparam("w_fleet"), devices.c.device_id == bindparam("w_device"),
           devices.c.rev == bindparam("w_rev"))
    .values({c: bindparam(f"v_{c}") for c in _COLUMNS})
)


def _cas_params(fleet: str, device_id: str, expected_rev: int, rec: DeviceRecord) -> dict[str, Any]:
    return {"w_fleet": fleet, "w_device": device_id, "w_rev": expected_rev,
            **{f"v_{k}": v for k, v in _to_row(rec).items()}}


def _to_row(rec: DeviceRecord) -> dict[str, Any]:
    row = {c: getattr(rec, c) for c in _COLUMNS if c in _RECORD_FIELDS}
    row["status"] = rec.reported_status
    row["reported_groups"] = list(rec.reported_groups)
    return row


def _from_row(row: Any, assigned: tuple[str, ...]) -> DeviceRecord:
    data = dict(row._mapping)
    data["reported_status"] = data.pop("status")
    data["reported_groups"] = tuple(data["reported_groups"] or ())
    data["hardware"] = data["hardware"] or {}
    data["degraded"] = data["degraded"] or {}
    rec = DeviceRecord(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})
    return with_assignments(rec, assigned)


class DeviceRepository:
    """The devices of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def _assigned(self, conn: Any, device_id: str | None = None) -> dict[str, tuple[str, ...]]:
        q = select(group_assignments.c.device_id, group_assignments.c.group_name).where(
            group_assignments.c.fleet == self.fleet
        )
        if device_id is not None:
            q = q.where(group_assignments.c.device_id == device_id)
        out: dict[str, list[str]] = {}
        for dev, group in conn.execute(q):
            out.setdefault(dev, []).append(group)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def get(self, device_id: str) -> DeviceRecord | None:
        """The stored record (status as reported; the store sets it as of now), or None."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(devices).where(devices.c.fleet == self.fleet, devices.c.device_id == device_id)
            ).first()
            if row is None:
                return None
            return _from_row(row, self._assigned(conn, device_id).get(device_id, ()))

    def all(self) -> list[DeviceRecord]:
        """Every device of the fleet, by id."""
        with self._engine.connect() as conn:
            assigned = self._assigned(conn)
            rows = conn.execute(
                select(devices).where(devices.c.fleet == self.fleet).order_by(devices.c.device_id)
            ).all()
            return [_from_row(r, assigned.get(r.device_id, ())) for r in rows]

    def ids(self) -> list[str]:
        """Every device id of the fleet."""
        with self._engine.connect() as conn:
            return list(conn.execute(select(devices.c.device_id).where(devices.c.fleet == self.fleet)).scalars())

    def update(self, device_id: str, change: Callable[[DeviceRecord], DeviceRecord]) -> DeviceRecord:
        """Apply change to the current record (a new one if absent) and store it; retried when another worker
        wrote the same device in between, so no update is lost."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            current = self.get(device_id)
            with self._engine.begin() as conn:
                if current is None:
                    fresh = change(new_record(self.fleet, device_id))
                    if insert_absent(conn, devices, {"fleet": self.fleet, "device_id": device_id,
                                                     **_to_row(replace(fresh, rev=1))}, ["fleet", "device_id"]):
                        return replace(fresh, rev=1)
                    continue
                changed = change(current)
                if changed == current:
                    return current
                done = conn.execute(
                    _CAS_UPDATE, _cas_params(self.fleet, device_id, current.rev, replace(changed, rev=current.rev + 1))
                ).rowcount
                if done:
                    return replace(changed, rev=current.rev + 1)
        raise StorageError(f"device {device_id}: gave up after {MAX_UPDATE_ATTEMPTS} conflicting concurrent updates")

    def update_many(self, changes: Mapping[str, Callable[[DeviceRecord], DeviceRecord]]) -> None:
        """update() for many devices with one read and one transaction; a device another worker wrote in between
        is retried alone. Rows are written in id order, so two workers' transactions cannot deadlock."""
        if not changes:
            return
        ids = sorted(changes)
        with self._engine.connect() as conn:
            assigned = self._assigned(conn)
            rows = conn.execute(select(devices).where(devices.c.fleet == self.fleet,
                                                      devices.c.device_id.in_(ids))).all()
        current = {r.device_id: _from_row(r, assigned.get(r.device_id, ())) for r in rows}
        retry: list[str] = []
        with self._engine.begin() as conn:
            for dev in ids:
                rec = current.get(dev)
                if rec is None:
                    fresh = changes[dev](new_record(self.fleet, dev))
                    if not insert_absent(conn, devices, {"fleet": self.fleet, "device_id": dev,
                                                         **_to_row(replace(fresh, rev=1))}, ["fleet", "device_id"]):
                        retry.append(dev)
                    continue
                changed = changes[dev](rec)
                if changed == rec:
                    continue
                done = conn.execute(
                    _CAS_UPDATE, _cas_params(self.fleet, dev, rec.rev, replace(changed, rev=rec.rev + 1))
                ).rowcount
                if not done:
                    retry.append(dev)
        for dev in retry:
            self.update(dev, changes[dev])

    def assign(self, device_id: str, group: str, now_ms: int) -> bool:
        """Add a control-plane group assignment; False when it was already there."""
        with self._engine.begin() as conn:
            return insert_absent(
                conn, group_assignments,
                {"fleet": self.fleet, "device_id": device_id, "group_name": group, "assigned_ms": now_ms},
                ["fleet", "device_id", "group_name"],
            )

    def unassign(self, device_id: str, group: str) -> bool:
        """Remove a control-plane assignment; False when there was none (groups from the agent's config stay)."""
        with self._engine.begin() as conn:
            return bool(conn.execute(delete(group_assignments).where(and_(
                group_assignments.c.fleet == self.fleet, group_assignments.c.device_id == device_id,
                group_assignments.c.group_name == group,
            ))).rowcount)
