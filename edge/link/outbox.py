"""Durable store-and-forward FIFO for MQTT messages: SQLite, bounded, survives agent restarts and broker outages.

Journal mode is WAL with ``synchronous=NORMAL`` by default: a commit is atomic and survives a crash or kill of the
agent (the WAL is in the OS page cache, which outlives the process), and the database can never be corrupted by a
power cut; only the last commits before a power loss may be lost. ``FULL`` adds an fsync per message, which at
tens of messages per second wears SD/eMMC flash and stalls the producer for milliseconds, for the benefit of
keeping the last second of telemetry through a power cut. Pick ``FULL`` (``mqtt.outbox_synchronous``) where that
second matters more than the flash.

A full disk never stops the agent: a message that cannot be written is counted (`write_errors`) instead of
raising into the thread that produced it, and writing resumes by itself once there is space again.

Large messages (object snapshots) are queued in a lane with its own budget of messages and payload bytes: beyond
it their oldest are dropped and counted per lane (`lane_dropped`), so an outage fills neither the disk nor the
queue's message bound with images, and events and telemetry keep their room.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.errors import OutboxError
from edge.link.lanes import LaneBudget

log = logging.getLogger(__name__)

Synchronous = Literal["normal", "full"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    lane TEXT,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""
# Queue files written before lanes existed gain the two columns (NULL lane: no lane budget) when opened.
_LANE_COLUMNS = {"lane": "ALTER TABLE messages ADD COLUMN lane TEXT",
                 "size": "ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0"}
_LANE_INDEX = "CREATE INDEX IF NOT EXISTS messages_lane ON messages (lane, id) WHERE lane IS NOT NULL"

_INSERT = "INSERT INTO messages (topic, payload, qos, retain, created_ms, lane, size) VALUES (?, ?, ?, ?, ?, ?, ?)"


@dataclass
class _Pending:
    """A message waiting for its group's commit; `id` stays None when the disk refused the group."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_ms: int
    budget: LaneBudget | None = None
    id: int | None = None
    done: bool = False


@dataclass(frozen=True)
class OutboxMessage:
    """One queued message; `id` orders messages and never repeats within a queue file."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Bounded durable FIFO; overflow drops the oldest messages and counts them in `dropped` (persisted)."""

    def __init__(self, path: Path | str, max_messages: int = 100_000, synchronous: Synchronous = "normal") -> None:
        if max_messages < 1:
            raise OutboxError(f"outbox bound must be >= 1 message, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        # Group commit: producers queue in _waiting; one of them at a time commits all that waits.
        self._group = threading.Condition(threading.Lock())
        self._waiting: list[_Pending] = []
        self._committing = False
        self._closed = False
        self._db = self._open(synchronous)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        self._dropped = int(self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0])
        self._write_errors = 0
        self._lost_this_outage = 0
        self._failing = False
        if self._depth > max_messages:
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    trimmed = self._trim(self._depth)
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    self._db.close()
                    raise OutboxError(f"cannot trim outbox {self.path} to {max_messages} messages: {exc}") from exc
                self._depth -= trimmed
                self._dropped += trimmed

    def _open(self, synchronous: Synchronous) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(synchronous)
        except sqlite3.DatabaseError as exc:
            if not self.path.exists() or isinstance(exc, sqlite3.OperationalError):
                raise OutboxError(f"cannot open outbox {self.path}: {exc}; check the directory is writable") from exc
            # A corrupt queue must not keep the agent from starting: set it aside for inspection and start empty.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            log.error("outbox %s is not a usable SQLite file (%s); moved it to %s and started empty", self.path, exc,
                      aside)
            try:
                return self._connect(synchronous)
            except sqlite3.DatabaseError as exc2:
                raise OutboxError(f"cannot create outbox {self.path}: {exc2}") from exc2
        except OSError as exc:
            raise OutboxError(f"cannot create outbox directory {self.path.parent}: {exc}") from exc

    def _connect(self, synchronous: Synchronous) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            db.executescript(_SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            for column, alter in _LANE_COLUMNS.items():
                if column not in have:
                    db.execute(alter)
            db.execute(_LANE_INDEX)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def put(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, budget: LaneBudget | None = None
    ) -> int | None:
        """Append a message and return its id once the group holding it committed; drops the oldest beyond the
        bound.

        Group commit: messages put while a commit is running wait for it and then go to disk together in the
        next transaction, so concurrent producers share one commit instead of queueing for one each; a lone
        producer pays exactly one commit as before. The promise is unchanged: put() returns only after its
        message is committed. A message the disk cannot take (full, I/O error) is counted in `write_errors`
        and None is returned: the threads that produce messages must never stop on the state of the disk.
        Bad input still raises. With a lane budget, the lane's oldest messages beyond it are dropped in the same
        transaction (a message larger than the whole lane budget is dropped itself, counted like the others).
        """
        return self.put_many([(topic, payload)], qos, retain, budget)[0]

    def put_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int = 1, retain: bool = False,
        budget: LaneBudget | None = None,
    ) -> list[int | None]:
        """Append (topic, payload) messages in order in one transaction and return their ids once committed.

        The batch joins the same group commit as put(), so a single producer that has several messages at hand
        (the results thread draining its queue) pays one commit for all of them; all of them or, on a refusing
        disk, none of them are written (counted in `write_errors`, ids None). Bad input raises before anything
        is queued.
        """
        if qos not in (0, 1, 2):
            raise OutboxError(f"MQTT QoS must be 0, 1 or 2, got {qos}")
        if any(not topic for topic, _ in messages):
            raise OutboxError("cannot queue a message without a topic")
        if not messages:
            return []
        now_ms = int(time.time() * 1000)
        mine = [_Pending(topic, bytes(payload), qos, retain, now_ms, budget) for topic, payload in messages]
        last = mine[-1]
        with self._group:
            if self._closed:
                raise OutboxError(f"outbox {self.path} is closed; messages can no longer be queued")
            # Appended together under the lock, so one leader takes them all into one transaction.
            self._waiting.extend(mine)
            while not last.done:
                if not self._committing:
                    # Lead: commit everything waiting, these messages included.
                    batch, self._waiting = self._waiting, []
                    self._committing = True
                    break
                self._group.wait()
            else:
                return [m.id for m in mine]
        try:
            self._commit(batch)
        finally:
            with self._group:
                self._committing = False
                self._group.notify_all()
        return [m.id for m in mine]

    def _commit(self, batch: list[_Pending]) -> None:
        """Write one group in one transaction; all of it or, on a refusing disk, none of it (counted)."""
        with self._lock:
            try:
                if self._closed:
                    raise sqlite3.ProgrammingError("closed while the group waited")
                self._db.execute("BEGIN IMMEDIATE")
                # One statement for the group: ids are consecutive (AUTOINCREMENT, one writer inside BEGIN
                # IMMEDIATE), so the first is the last inserted one minus the count.
                rows = [(m.topic, m.payload, m.qos, int(m.retain), m.created_ms,
                         None if m.budget is None else m.budget.lane, len(m.payload)) for m in batch]
                if len(rows) == 1:
                    last_id = int(self._db.execute(_INSERT, rows[0]).lastrowid or 0)
                else:
                    self._db.executemany(_INSERT, rows)
                    last_id = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
                ids = range(last_id - len(batch) + 1, last_id + 1)
                budgets = {m.budget.lane: m.budget for m in batch if m.budget is not None}  # the latest wins
                over_lane = sum(self._trim_lane(b) for b in budgets.values())
                trimmed = self._trim(self._depth + len(batch) - over_lane)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._write_failed(exc, len(batch))
                for m in batch:
                    m.done = True
                return
            self._depth += len(batch) - trimmed - over_lane
            self._dropped += trimmed
            self._write_succeeded()
        for m, message_id in zip(batch, ids, strict=True):
            m.id, m.done = message_id, True

    def _write_failed(self, exc: sqlite3.Error, lost: int) -> None:
        """Count messages the disk refused; one log line per outage, not per message. Caller holds the lock."""
        self._write_errors += lost
        self._lost_this_outage += lost
        if not self._failing:
            self._failing = True
            log.error("cannot write to outbox %s (%s); new messages are lost and counted in outbox_write_errors "
                      "until it can (free space on that filesystem)", self.path, exc)

    def _write_succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("outbox %s is writable again; %d messages were lost meanwhile", self.path,
                        self._lost_this_outage)
            self._lost_this_outage = 0

    def _trim(self, depth: int) -> int:
        """Delete the oldest messages beyond the bound for a queue of `depth`; returns how many (caller holds the
        lock and applies the count to its figures once the transaction committed)."""
        excess = depth - self.max_messages
        if excess <= 0:
            return 0
        cur = self._db.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)", (excess,)
        )
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (cur.rowcount,))
        log.warning("outbox full (%d messages): dropped the %d oldest", self.max_messages, cur.rowcount)
        return int(cur.rowcount)

    def _trim_lane(self, budget: LaneBudget) -> int:
        """Delete a lane's oldest messages beyond its budget and count them (caller holds the lock, in a
        transaction); returns how many went."""
        rows = self._db.execute(
            "SELECT id, size FROM messages WHERE lane = ? ORDER BY id DESC", (budget.lane,)
        ).fetchall()
        kept, used, doomed = 0, 0, []
        for message_id, size in rows:  # newest first: keep while within both bounds, drop the rest
            if kept < budget.max_messages and used + size <= budget.max_bytes:
                kept, used = kept + 1, used + size
            else:
                doomed.append((message_id,))
        if not doomed:
            return 0
        self._db.executemany("DELETE FROM messages WHERE id = ?", doomed)
        key = f"dropped:{budget.lane}"
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)", (key,))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (len(doomed), key))
        log.warning("outbox lane %s over its budget (%d messages, %d bytes): dropped the %d oldest", budget.lane,
                    budget.max_messages, budget.max_bytes, len(doomed))
        return len(doomed)

    def lane_dropped(self, lane: str) -> int:
        """Messages of a lane dropped beyond its budget over the life of this queue file."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"dropped:{lane}",)).fetchone()
        return 0 if row is None else int(row[0])

    def lane_usage(self, lane: str) -> tuple[int, int]:
        """Messages and payload bytes of a lane waiting now."""
        with self._lock:
            count, used = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE lane = ?", (lane,)
            ).fetchone()
        return int(count), int(used)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open: nothing to undo
            self._db.execute("ROLLBACK")

    def peek(self, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
        """The oldest `limit` messages with an id above `after_id`, oldest first; nothing is removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def ack(self, message_id: int) -> None:
        """Remove a delivered message; unknown ids (already dropped or acked) are ignored."""
        self.ack_many([message_id])

    def ack_many(self, message_ids: Iterable[int]) -> None:
        """Remove delivered messages in one transaction; OutboxError (full disk) leaves them all for a retry."""
        ids = [(i,) for i in message_ids]
        if not ids:
            return
        with self._lock:
            if self._closed:
                raise OutboxError(f"outbox {self.path} is closed; delivered messages stay queued")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for row in ids:
                    removed += self._db.execute("DELETE FROM messages WHERE id = ?", row).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot remove delivered messages from outbox {self.path}: {exc}") from exc
            self._depth -= removed

    def depth(self) -> int:
        """Messages waiting."""
        with self._lock:
            return self._depth

    @property
    def write_errors(self) -> int:
        """Messages lost since this queue was opened because the disk could not take them (not persisted: the
        disk was full)."""
        with self._lock:
            return self._write_errors

    @property
    def dropped(self) -> int:
        """Messages dropped from a full queue over the life of this queue file."""
        with self._lock:
            return self._dropped

    def close(self) -> None:
        """Close the database; the queue stays on disk for the next run."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            except sqlite3.Error as exc:
                # What was committed is on disk; a checkpoint that cannot run now runs on the next open.
                log.warning("closing outbox %s: %s", self.path, exc)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
