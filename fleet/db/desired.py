"""Desired model versions (or channels) per group and per device, and the last desired state published to each.

A channel entry is stored with version 0: the version column predates channels and is NOT NULL in existing
databases, which additive migrations cannot change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, delete, select

from fleet.db.schema import desired, desired_published
from fleet.db.upsert import upsert

Scope = Literal["group", "device"]


@dataclass(frozen=True)
class DesiredEntry:
    """What a group or one device (an override) should run."""

    scope: Scope
    name: str
    model: str
    version: int | None
    allow_downgrade: bool = False
    rollout_id: str | None = None
    previous_version: int | None = None
    set_ms: int = 0
    channel: str | None = None

    @property
    def target(self) -> str:
        """What it asks for, as messages say it: 'v7' or 'channel canary'."""
        return f"v{self.version}" if self.version is not None else f"channel {self.channel}"


@dataclass(frozen=True)
class Published:
    """The desired state last published (retained) to one device, with the sequence it was signed with."""

    device_id: str
    model: str
    version: int | None
    allow_downgrade: bool
    rollout_id: str | None
    seq: int
    published_ms: int
    channel: str | None = None


def _version(stored: int | None) -> int | None:
    return stored or None


def _entry(r: object) -> DesiredEntry:
    return DesiredEntry(r.scope, r.name, r.model, _version(r.version), r.allow_downgrade,  # type: ignore[attr-defined]
                        r.rollout_id, r.previous_version, r.set_ms, r.channel)  # type: ignore[attr-defined]


class DesiredRepository:
    """Desired state of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def set(self, entry: DesiredEntry) -> DesiredEntry:
        """Record entry, keeping the version it replaces as previous_version (what a rollback returns to)."""
        old = self.get(entry.scope, entry.name)
        prev = entry.previous_version
        if prev is None and old is not None and old.version is not None and old.version != entry.version:
            prev = old.version
        elif prev is None and old is not None:
            prev = old.previous_version
        with self._engine.begin() as conn:
            upsert(conn, desired, {
                "fleet": self.fleet, "scope": entry.scope, "name": entry.name, "model": entry.model,
                "version": entry.version or 0, "allow_downgrade": entry.allow_downgrade,
                "rollout_id": entry.rollout_id, "previous_version": prev, "set_ms": entry.set_ms,
                "channel": entry.channel,
            }, ["fleet", "scope", "name"])
        return DesiredEntry(entry.scope, entry.name, entry.model, entry.version, entry.allow_downgrade,
                            entry.rollout_id, prev, entry.set_ms, entry.channel)

    def get(self, scope: Scope, name: str) -> DesiredEntry | None:
        """The entry for a group or device, or None."""
        d = desired.c
        with self._engine.connect() as conn:
            r = conn.execute(select(desired).where(d.fleet == self.fleet, d.scope == scope, d.name == name)).first()
        return None if r is None else _entry(r)

    def all(self) -> list[DesiredEntry]:
        """Every entry of the fleet."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(desired).where(desired.c.fleet == self.fleet)
                                .order_by(desired.c.scope, desired.c.name)).all()
        return [_entry(r) for r in rows]

    def clear(self, scope: Scope, name: str) -> bool:
        """Remove an entry; False when there was none."""
        d = desired.c
        with self._engine.begin() as conn:
            return bool(conn.execute(delete(desired).where(d.fleet == self.fleet, d.scope == scope,
                                                           d.name == name)).rowcount)

    def published(self, device_id: str) -> Published | None:
        """What was last published to the device."""
        p = desired_published.c
        with self._engine.connect() as conn:
            r = conn.execute(select(desired_published).where(p.fleet == self.fleet, p.device_id == device_id)).first()
        return None if r is None else Published(r.device_id, r.model, _version(r.version), r.allow_downgrade,
                                                r.rollout_id, r.seq, r.published_ms, r.channel)

    def mark_published(self, pub: Published) -> None:
        """Remember what was published to a device."""
        with self._engine.begin() as conn:
            upsert(conn, desired_published, {
                "fleet": self.fleet, "device_id": pub.device_id, "model": pub.model, "version": pub.version or 0,
                "allow_downgrade": pub.allow_downgrade, "rollout_id": pub.rollout_id, "seq": pub.seq,
                "published_ms": pub.published_ms, "channel": pub.channel,
            }, ["fleet", "device_id"])

    def forget_published(self, device_id: str) -> None:
        """The device's retained desired state was cleared."""
        p = desired_published.c
        with self._engine.begin() as conn:
            conn.execute(delete(desired_published).where(p.fleet == self.fleet, p.device_id == device_id))
