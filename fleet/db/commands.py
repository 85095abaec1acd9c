"""The issuer's command sequence (one counter per signing key, shared by every worker) and the command log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, select, update

from fleet.db.schema import commands, issuer_seq
from fleet.db.upsert import insert_absent
from shared.command_signing import MAX_SEQ


@dataclass(frozen=True)
class CommandRecord:
    """One command sent, and its reply once one came."""

    request_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    seq: int
    sent_ms: int
    reply_ok: bool | None = None
    reply_error: str | None = None
    reply_ms: int | None = None


class CommandRepository:
    """Sequence numbers and sent commands of one fleet."""

    def __init__(self, engine: Engine, fleet: str) -> None:
        self._engine = engine
        self.fleet = fleet

    def next_seq(self, key_id: str, now_ms: int) -> int:
        """The key's next sequence number: above every one handed out before (by any worker, across restarts) and
        never below the clock in ms, like shared.command_signing.next_sequence. One atomic row update."""
        s = issuer_seq.c
        bumped = case((s.last_seq + 1 > now_ms, s.last_seq + 1), else_=now_ms)
        for _ in range(3):
            with self._engine.begin() as conn:
                got = conn.execute(
                    update(issuer_seq).where(s.key_id == key_id, s.last_seq < MAX_SEQ)
                    .values(last_seq=bumped).returning(s.last_seq)
                ).scalar()
                if got is not None:
                    return int(got)
                if insert_absent(conn, issuer_seq, {"key_id": key_id, "last_seq": now_ms}, ["key_id"]):
                    return now_ms
        raise RuntimeError(f"could not allocate a sequence number for key {key_id}")

    def record(self, rec: CommandRecord) -> None:
        """Log a command about to be sent."""
        with self._engine.begin() as conn:
            conn.execute(commands.insert().values(
                request_id=rec.request_id, fleet=self.fleet, device_id=rec.device_id, name=rec.name, args=rec.args,
                seq=rec.seq, sent_ms=rec.sent_ms,
            ))

    def reply(self, request_id: str, ok: bool, error: str | None, now_ms: int, device_id: str | None = None) -> bool:
        """Attach a device's reply to its command (only a command sent to that device, when device_id is given: a
        device cannot answer for another); False for a reply to a command not sent by this fleet."""
        c = commands.c
        where = [c.fleet == self.fleet, c.request_id == request_id]
        if device_id is not None:
            where.append(c.device_id == device_id)
        with self._engine.begin() as conn:
            return bool(conn.execute(
                update(commands).where(*where).values(reply_ok=ok, reply_error=error, reply_ms=now_ms)
            ).rowcount)

    def remove_device(self, device_id: str, conn: Connection) -> None:
        """Forget the commands sent to one device (in the caller's transaction)."""
        conn.execute(delete(commands).where(commands.c.fleet == self.fleet, commands.c.device_id == device_id))

    def get(self, request_id: str) -> CommandRecord | None:
        """One logged command."""
        with self._engine.connect() as conn:
            r = conn.execute(select(commands).where(commands.c.request_id == request_id)).first()
        return None if r is None else CommandRecord(r.request_id, r.device_id, r.name, dict(r.args), r.seq,
                                                    r.sent_ms, r.reply_ok, r.reply_error, r.reply_ms)

    def recent(self, device_id: str, limit: int = 10) -> list[CommandRecord]:
        """The device's latest commands, newest first."""
        c = commands.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(commands).where(c.fleet == self.fleet, c.device_id == device_id)
                                .order_by(c.sent_ms.desc()).limit(limit)).all()
        return [CommandRecord(r.request_id, r.device_id, r.name, dict(r.args), r.seq, r.sent_ms, r.reply_ok,
                              r.reply_error, r.reply_ms) for r in rows]
