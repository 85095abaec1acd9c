"""Device rows and control-plane group assignments; records are read and written whole, guarded by a revision."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fleet.db import sanitize
from fleet.db.batch_write import CasRow, cas_update
from fleet.db.record_cache import RecordCache
from fleet.db.schema import devices, group_assignments
from fleet.db.upsert import insert_absent
from fleet.errors import StorageError
from fleet.registry import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    STATUSES,
    DeviceRecord,
    evolve,
    new_record,
    with_assignments,
)
from shared.payloads import MAX_MODELS
from shared.streams import MAX_STREAMS

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


def _insert_absent_many(conn: Connection) -> Any:
    """INSERT of device rows that skips ids already there, returning the ids it inserted (executemany)."""
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(devices)
    return ins.on_conflict_do_nothing(index_elements=["fleet", "device_id"]).returning(devices.c.device_id)


def _cas_params(fleet: str, device_id: str, expected_rev: int, rec: DeviceRecord) -> dict[str, Any]:
    return {"w_fleet": fleet, "w_device": device_id, "w_rev": expected_rev,
            **{f"v_{k}": v for k, v in _to_row(rec).items()}}


# (record field, column) of each column a record writes; the `status` column holds the device's reported status.
_ROW_FIELDS = tuple(("reported_status" if c == "status" else c, c) for c in _COLUMNS
                    if c == "status" or c in _RECORD_FIELDS)
# The same but rev, which the batch writer sets.
_FIELD_COLUMNS = tuple((name, column) for name, column in _ROW_FIELDS if column != "rev")
# Columns a record holds as a tuple and a row as a JSON list.
_LIST_COLUMNS = frozenset({"reported_groups", "models", "model_streams"})


def _to_row(rec: DeviceRecord) -> dict[str, Any]:
    d = rec.__dict__
    return {column: list(d[name]) if column in _LIST_COLUMNS else d[name] for name, column in _ROW_FIELDS}


def _changed(before: DeviceRecord, after: DeviceRecord) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns whose values differ between two records, and after's values of them (as _to_row writes them):
    a field-by-field walk, far cheaper than building and comparing two rows."""
    b, a = before.__dict__, after.__dict__
    columns: list[str] = []
    values: list[Any] = []
    for name, column in _FIELD_COLUMNS:
        v, w = a[name], b[name]
        if v is not w and v != w:
            columns.append(column)
            values.append(list(v) if column in _LIST_COLUMNS else v)
    return tuple(columns), tuple(values)


_INT_COLUMNS = frozenset(c.name for c in devices.columns if c.type.python_type is int)
_COUNTERS = frozenset({"rev", "restarts", "refused", "shed"})
_ROW_KEYS = tuple(c.name for c in devices.columns)


# The further models' text fields (fleet.registry.MODEL_FIELDS but name, version and streams), in the order the
# contract lists them, and the longest the contract admits (a variant file name).
_MODEL_TEXT = ("variant", "precision", "backend", "device")
_MODEL_TEXT_LIMIT = 128


def _model(item: Any) -> dict[str, Any] | None:
    """One stored further model, its MODEL_FIELDS alone, each through the cheap checks the other columns get (a
    pydantic validation per model per row read cost more than the rest of the row); None without a valid name or
    with a version that is not one."""
    if not isinstance(item, dict) or (name := sanitize.ident(item.get("name"))) is None:
        return None
    out: dict[str, Any] = {"name": name}
    if (raw_version := item.get("version")) is not None:
        version = sanitize.int64(raw_version)
        if version is None or version < 0:
            return None
        out["version"] = version
    for key in _MODEL_TEXT:
        if (value := sanitize.text(item.get(key), _MODEL_TEXT_LIMIT)) is not None:
            out[key] = value
    out["streams"] = _streams(item.get("streams"))
    return out


def _streams(raw: Any) -> list[str]:
    """The stored streams of a model: at most MAX_STREAMS, valid stream names only."""
    return [s for s in raw[:MAX_STREAMS] if sanitize.ident(s) is not None] if isinstance(raw, list) else []


def _models(raw: Any) -> tuple[dict[str, Any], ...]:
    """Stored further models: an entry without a valid name or version (a row an older version or a person wrote)
    is left out, and of the others what a reader can trust is kept."""
    if not isinstance(raw, list):
        return ()
    return tuple(m for item in raw[:MAX_MODELS] if (m := _model(item)) is not None)


def _from_row(row: Any, assigned: tuple[str, ...]) -> DeviceRecord:
    """A record from a row, every value sanitised: a row an older version wrote (NaN, 1e308, an integer beyond
    64 bits, a wrong type) reads as 'not known' for that field instead of failing the read."""
    # A whole-table select's row is in table order: zip is a fraction of building a RowMapping (ingest reads a row
    # per device per batch).
    data = dict(zip(_ROW_KEYS, row, strict=True)) if len(row) == len(_ROW_KEYS) else dict(row._mapping)
    for name in _INT_COLUMNS:
        if name in data:
            data[name] = sanitize.int64(data[name])
            if name in _COUNTERS:
                data[name] = data[name] or 0
    status = data.pop("status")
    data["reported_status"] = status if status in STATUSES else "unknown"
    data["telemetry_interval_s"] = sanitize.finite(data["telemetry_interval_s"], MIN_INTERVAL_S, MAX_INTERVAL_S)
    groups = data["reported_groups"] if isinstance(data["reported_groups"], list) else []
    data["reported_groups"] = tuple(g for g in groups if isinstance(g, str))
    hardware = sanitize.json_tree(data["hardware"])
    data["hardware"] = hardware if isinstance(hardware, dict) else {}
    degraded = data["degraded"] if isinstance(data["degraded"], dict) else {}
    data["degraded"] = {str(k): v for k, v in degraded.items() if isinstance(v, str)}
    data["unsigned_commands"] = bool(data["unsigned_commands"])
    data["models"] = _models(data.get("models"))
    data["model_streams"] = tuple(_streams(data.get("model_streams")))
    for name in ("boot_id", "agent_version", "model_name", "model_variant", "model_backend", "model_precision",
                 "config_digest", "last_refused", "follow", "channel"):
        data[name] = sanitize.text(data.get(name), 256)
    rec = DeviceRecord(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})
    return with_assignments(rec, assigned)


@dataclass
class BatchWrite:
    """What update_in did: ids to retry alone once its transaction is over, ids left out by the cap on unassigned
    devices, and the records it wrote (remembered once the transaction committed)."""

    retry: list[str] = field(default_factory=list)
    capped: set[str] = field(default_factory=set)
    written: list[DeviceRecord] = field(default_factory=list)


class DeviceRepository:
    """The devices of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet
        self._cache = RecordCache()

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

    def _read(self, conn: Connection, device_id: str, lock: bool) -> DeviceRecord | None:
        """The stored record, or None; with `lock`, under a row lock where the database has one (PostgreSQL)."""
        q = select(devices).where(devices.c.fleet == self.fleet, devices.c.device_id == device_id)
        row = conn.execute(q.with_for_update() if lock else q).first()
        if row is None:
            return None
        return _from_row(row, self._assigned(conn, device_id).get(device_id, ()))

    def get(self, device_id: str) -> DeviceRecord | None:
        """The stored record (status as reported; the store sets it as of now), or None."""
        with self._engine.connect() as conn:
            return self._read(conn, device_id, lock=False)

    def all(self, limit: int | None = None, after: str | None = None) -> list[DeviceRecord]:
        """Devices of the fleet by id: all, or a page of at most `limit` whose ids sort after `after` (a cursor:
        pass the last id of the previous page)."""
        q = select(devices).where(devices.c.fleet == self.fleet)
        if after is not None:
            q = q.where(devices.c.device_id > after)
        q = q.order_by(devices.c.device_id)
        if limit is not None:
            q = q.limit(max(limit, 0))
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
            ids = [r.device_id for r in rows]
            assigned = self._assigned(conn) if limit is None else self._assigned_of(conn, ids)
            return [_from_row(r, assigned.get(r.device_id, ())) for r in rows]

    def _assigned_of(self, conn: Any, ids: list[str]) -> dict[str, tuple[str, ...]]:
        if not ids:
            return {}
        q = select(group_assignments.c.device_id, group_assignments.c.group_name).where(
            group_assignments.c.fleet == self.fleet, group_assignments.c.device_id.in_(ids))
        out: dict[str, list[str]] = {}
        for dev, group in conn.execute(q):
            out.setdefault(dev, []).append(group)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def count(self) -> int:
        """Devices of the fleet."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(devices)
                                    .where(devices.c.fleet == self.fleet)).scalar_one())

    def unassigned_count(self, conn: Connection | None = None) -> int:
        """Devices no operator assigned to a group here (the ones a cap on unknown devices bounds)."""
        assigned = select(group_assignments.c.device_id).where(group_assignments.c.fleet == self.fleet)
        q = select(func.count()).select_from(devices).where(devices.c.fleet == self.fleet,
                                                            devices.c.device_id.not_in(assigned))
        if conn is not None:
            return int(conn.execute(q).scalar_one())
        with self._engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def ids(self) -> list[str]:
        """Every device id of the fleet."""
        with self._engine.connect() as conn:
            return list(conn.execute(select(devices.c.device_id).where(devices.c.fleet == self.fleet)).scalars())

    def update(self, device_id: str, change: Callable[[DeviceRecord], DeviceRecord]) -> DeviceRecord:
        """Apply change to the current record (a new one if absent) and store it; retried when another worker
        wrote the same device in between, so no update is lost."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            done: DeviceRecord | None = None
            with self._engine.begin() as conn:
                # Read under a row lock where the database has one (PostgreSQL): a concurrent writer waits here
                # instead of failing the compare-and-set below, which under load could lose 20 times in a row.
                current = self._read(conn, device_id, lock=True)
                if current is None:
                    fresh = replace(change(new_record(self.fleet, device_id)), rev=1)
                    if insert_absent(conn, devices, {"fleet": self.fleet, "device_id": device_id, **_to_row(fresh)},
                                     ["fleet", "device_id"]):
                        done = fresh
                else:
                    changed = change(current)
                    if changed == current:
                        return current
                    new = replace(changed, rev=current.rev + 1)
                    if conn.execute(_CAS_UPDATE, _cas_params(self.fleet, device_id, current.rev, new)).rowcount:
                        done = new
            if done is not None:  # committed: this worker's next write of the device needs no read
                self._cache.remember([done])
                return done
        raise StorageError(f"device {device_id}: gave up after {MAX_UPDATE_ATTEMPTS} conflicting concurrent updates")

    def update_many(self, changes: Mapping[str, Callable[[DeviceRecord], DeviceRecord]],
                    max_unassigned: int | None = None) -> set[str]:
        """update() for many devices in one transaction; a device another worker wrote in between is retried
        alone. A device not yet known is not created once `max_unassigned` devices without an assignment exist;
        returns the ids left out for that reason."""
        if not changes:
            return set()
        with self._engine.begin() as conn:
            done = self.update_in(conn, changes, max_unassigned)
        self.remember(done)
        for dev in done.retry:
            self.update(dev, changes[dev])
        return done.capped

    def remember(self, done: BatchWrite) -> None:
        """Keep the records of a committed update_in, so the next batch writes them without reading their rows."""
        self._cache.remember(done.written)

    def update_in(self, conn: Connection, changes: Mapping[str, Callable[[DeviceRecord], DeviceRecord]],
                  max_unassigned: int | None = None) -> BatchWrite:
        """update_many's one transaction on the caller's connection; `remember` its result once committed.

        Reads only each row's rev (PostgreSQL: locking the rows, in id order, so two workers cannot deadlock); a
        record this worker wrote at that rev is changed in memory, any other row is read whole. Each device's
        changed columns are written with one compare-and-set statement per set of columns for the whole batch
        (SQLite takes no lock before it, which would starve the lease and maintenance threads; a row another
        writer changed in between is left to retry alone)."""
        ids = sorted(changes)
        pg = conn.dialect.name == "postgresql"
        revs = self._revs(conn, ids, lock=pg)
        current = self._cache.current(revs)
        unread = [d for d in ids if d in revs and d not in current]
        if unread:
            assigned = self._assigned_of(conn, unread)
            for row in conn.execute(select(devices).where(devices.c.fleet == self.fleet,
                                                          devices.c.device_id.in_(unread))):
                current[row.device_id] = _from_row(row, assigned.get(row.device_id, ()))
        done = BatchWrite()
        room: int | None = None
        if max_unassigned is not None and len(current) < len(ids):
            room = max(0, max_unassigned - self.unassigned_count(conn))
        writes: dict[tuple[str, ...], list[CasRow]] = {}
        pending: dict[str, DeviceRecord] = {}
        created: list[dict[str, Any]] = []
        for dev in ids:
            rec = current.get(dev)
            if rec is None:
                if room is not None:
                    if room <= 0:
                        done.capped.add(dev)
                        continue
                    room -= 1
                fresh = pending[dev] = evolve(changes[dev](new_record(self.fleet, dev)), rev=1)
                created.append({"fleet": self.fleet, "device_id": dev, **_to_row(fresh)})
                continue
            changed = changes[dev](rec)
            columns, values = _changed(rec, changed)
            if columns:
                writes.setdefault((*columns, "rev"), []).append((dev, rec.rev, (*values, rec.rev + 1)))
                pending[dev] = evolve(changed, rev=rec.rev + 1)
        if created:  # new devices in one INSERT ... ON CONFLICT DO NOTHING; one another worker created is retried
            inserted = set(conn.execute(_insert_absent_many(conn), created).scalars())
            done.retry += [row["device_id"] for row in created if row["device_id"] not in inserted]
        for columns, rows in writes.items():
            written = cas_update(conn, self.fleet, columns, rows)
            missed = [row[0] for row in rows if row[0] not in written]
            if missed and pg:
                raise StorageError(f"{len(missed)} of {len(rows)} locked device records were changed by another "
                                   "writer; the batch is applied again device by device")
            done.retry += missed
        done.written = [rec for dev, rec in pending.items() if dev not in done.retry]
        return done

    def _revs(self, conn: Connection, ids: list[str], lock: bool) -> dict[str, int]:
        """Each present row's rev (locked for this transaction when lock)."""
        # On the driver, the ids as one parameter: SQLAlchemy's expanding IN processed each id on every batch.
        if conn.dialect.name == "postgresql":
            sql = (f"SELECT device_id, rev FROM {devices.name} WHERE fleet = %s AND device_id = ANY(%s) "
                   f"ORDER BY device_id{' FOR UPDATE' if lock else ''}")
            rows = conn.exec_driver_sql(sql, (self.fleet, ids))
        else:
            sql = (f"SELECT device_id, rev FROM {devices.name} WHERE fleet = ? AND device_id IN "
                   "(SELECT value FROM json_each(?))")
            rows = conn.exec_driver_sql(sql, (self.fleet, orjson.dumps(ids).decode()))
        return {dev: sanitize.int64(rev) or 0 for dev, rev in rows}

    def remove(self, device_id: str, conn: Connection) -> bool:
        """Delete the device's row and its group assignments (within the caller's transaction); False if absent."""
        self._cache.forget([device_id])
        conn.execute(delete(group_assignments).where(group_assignments.c.fleet == self.fleet,
                                                     group_assignments.c.device_id == device_id))
        return bool(conn.execute(delete(devices).where(devices.c.fleet == self.fleet,
                                                       devices.c.device_id == device_id)).rowcount)

    def silent_since(self, before_ms: int, limit: int = 1000) -> list[str]:
        """Ids of devices last heard from (or, never heard alive, first seen) before before_ms."""
        d = devices.c
        q = (select(d.device_id).where(d.fleet == self.fleet, or_(
            d.last_seen_ms < before_ms, and_(d.last_seen_ms.is_(None), d.first_seen_ms < before_ms)))
            .order_by(d.device_id).limit(limit))
        with self._engine.connect() as conn:
            return list(conn.execute(q).scalars())

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
