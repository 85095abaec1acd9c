"""Named leases with expiry: the one worker holding `leader` runs the rollout controller and the maintenance."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, or_, select, update

from fleet.db.schema import leases
from fleet.db.upsert import insert_absent


@dataclass(frozen=True)
class Lease:
    """Who holds a lease and until when (Unix ms)."""

    name: str
    holder: str
    expires_ms: int
    acquired_ms: int


class LeaseRepository:
    """Acquire, renew and release leases; every step is one conditional row write, so two workers never both win."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def acquire(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take the lease if free or expired, or renew it if held by holder; True when holder has it now."""
        lc = leases.c
        with self._engine.begin() as conn:
            current = conn.execute(select(lc.holder).where(lc.name == name)).scalar()
            acquired = now_ms if current != holder else lc.acquired_ms
            done = conn.execute(
                update(leases).where(lc.name == name, or_(lc.holder == holder, lc.expires_ms <= now_ms))
                .values(holder=holder, expires_ms=now_ms + ttl_ms, acquired_ms=acquired)
            ).rowcount
            if done:
                return True
            return insert_absent(conn, leases, {"name": name, "holder": holder, "expires_ms": now_ms + ttl_ms,
                                                "acquired_ms": now_ms}, ["name"])

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up (on a clean stop) so another worker takes over at once."""
        with self._engine.begin() as conn:
            return bool(conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder)).rowcount)

    def get(self, name: str) -> Lease | None:
        """The lease as stored (it may have expired)."""
        with self._engine.connect() as conn:
            r = conn.execute(select(leases).where(leases.c.name == name)).first()
        return None if r is None else Lease(r.name, r.holder, r.expires_ms, r.acquired_ms)
