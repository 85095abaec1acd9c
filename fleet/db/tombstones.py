"""Tombstones of removed devices: the broker keeps a removed device's retained status and state when the fleet's
user may not clear them (the shipped ACL), so ingest ignores retained messages of a tombstoned device until a live
one arrives."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, Engine, delete, select

from fleet.db.schema import device_tombstones
from fleet.db.upsert import upsert


class TombstoneRepository:
    """Record, look up and lift the tombstones of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def add(self, device_id: str, removed_ms: int, conn: Connection) -> None:
        """Mark the device removed at removed_ms (within the caller's transaction); a second removal moves it."""
        upsert(conn, device_tombstones, {"fleet": self.fleet, "device_id": device_id, "removed_ms": removed_ms},
               ["fleet", "device_id"])

    def among(self, device_ids: Collection[str]) -> set[str]:
        """Which of these devices are tombstoned (one indexed query per ingest batch)."""
        if not device_ids:
            return set()
        t = device_tombstones.c
        with self._engine.connect() as conn:
            if conn.execute(select(t.device_id).where(t.fleet == self.fleet).limit(1)).first() is None:
                return set()  # the usual case: no removed device, and no thousand ids to send
            return set(conn.execute(select(t.device_id).where(
                t.fleet == self.fleet, t.device_id.in_(sorted(set(device_ids))))).scalars())

    def removed_at(self, device_id: str) -> int | None:
        """When the device was removed (Unix ms), None when it is not tombstoned."""
        t = device_tombstones.c
        with self._engine.connect() as conn:
            found = conn.execute(select(t.removed_ms).where(t.fleet == self.fleet, t.device_id == device_id)).scalar()
        return None if found is None else int(found)

    def lift(self, device_ids: Collection[str]) -> None:
        """The devices are back (a live message from each): their retained messages count again."""
        if not device_ids:
            return
        t = device_tombstones.c
        with self._engine.begin() as conn:
            conn.execute(delete(device_tombstones).where(t.fleet == self.fleet,
                                                         t.device_id.in_(sorted(set(device_ids)))))

    def prune(self, removed_before_ms: int) -> int:
        """Forget tombstones of devices removed before removed_before_ms (fleet clock); returns how many."""
        t = device_tombstones.c
        with self._engine.begin() as conn:
            gone = conn.execute(delete(device_tombstones).where(t.fleet == self.fleet,
                                                                t.removed_ms < removed_before_ms)).rowcount
        return int(gone)
