"""The durable outbox: FIFO order, bounded with oldest-first drops, survives reopening, safe across threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge.errors import OutboxError
from edge.link.outbox import Outbox
from tests.edge.small_fs import small_tmpfs


def put(box: Outbox, topic: str, payload: bytes, qos: int = 1) -> int:
    """put() where the disk has room: the id, never None."""
    message_id = box.put(topic, payload, qos=qos)
    assert message_id is not None, "the outbox refused a write with room on disk"
    return message_id


def test_fifo_peek_does_not_remove_and_ack_does(tmp_path: Path) -> None:
    with Outbox(tmp_path / "q.sqlite", max_messages=10) as box:
        ids = [put(box, "t/a", f"m{i}".encode()) for i in range(3)]
        assert ids == sorted(ids)
        assert [m.payload for m in box.peek(10)] == [b"m0", b"m1", b"m2"]
        assert box.depth() == 3
        box.ack(ids[0])
        assert [m.payload for m in box.peek(10)] == [b"m1", b"m2"]
        assert [m.payload for m in box.peek(10, after_id=ids[1])] == [b"m2"]
        box.ack(ids[0])  # acking twice is harmless
        assert box.depth() == 2


def test_overflow_drops_the_oldest_and_counts_them_persistently(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path, max_messages=10) as box:
        for i in range(25):
            box.put("t", str(i).encode())
        assert box.depth() == 10
        assert box.dropped == 15
        assert [m.payload for m in box.peek(100)] == [str(i).encode() for i in range(15, 25)]
    with Outbox(path, max_messages=10) as box:
        assert box.dropped == 15
        assert box.depth() == 10


def test_messages_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "q.sqlite"
    with Outbox(path) as box:
        first = put(box, "a/b", b"\x00binary\xff", qos=1)
        box.put("a/c", b"two", qos=0, retain=True)
    with Outbox(path) as box:
        msgs = box.peek(10)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in msgs] == [
            ("a/b", b"\x00binary\xff", 1, False),
            ("a/c", b"two", 0, True),
        ]
        # ids keep growing after a restart, so order across runs is kept
        assert put(box, "a/d", b"three") > msgs[-1].id > first


def test_reopening_with_a_smaller_bound_trims_to_it(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path, max_messages=100) as box:
        for i in range(30):
            box.put("t", str(i).encode())
    with Outbox(path, max_messages=10) as box:
        assert box.depth() == 10
        assert box.dropped == 20
        assert box.peek(1)[0].payload == b"20"


def test_concurrent_producers_lose_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "q.sqlite", max_messages=10_000) as box:

        def produce(n: int) -> None:
            for i in range(200):
                box.put(f"t/{n}", str(i).encode())

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        msgs = box.peek(10_000)
        assert len(msgs) == 800 == box.depth()
        for n in range(4):
            assert [m.payload for m in msgs if m.topic == f"t/{n}"] == [str(i).encode() for i in range(200)]


def test_uses_wal_journal(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path) as box:
        box.put("t", b"x")
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_input_is_refused_without_writing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "q.sqlite") as box:
        with pytest.raises(OutboxError, match="topic"):
            box.put("", b"x")
        with pytest.raises(OutboxError, match="QoS"):
            box.put("t", b"x", qos=3)
        assert box.depth() == 0
    with pytest.raises(OutboxError, match="bound"):
        Outbox(tmp_path / "other.sqlite", max_messages=0)
    with pytest.raises(OutboxError, match="closed"):
        box.put("t", b"after close")


def test_a_corrupt_file_is_set_aside_and_the_agent_starts_with_an_empty_queue(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with Outbox(path) as box:
        assert box.depth() == 0
        box.put("t", b"fresh")
        assert box.peek(1)[0].payload == b"fresh"
    aside = list(tmp_path.glob("q.sqlite.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not sqlite")


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="cannot"):
        Outbox(blocker / "q.sqlite")


def test_a_full_disk_counts_each_lost_message_logs_once_and_writing_resumes_when_space_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_tmpfs(tmp_path / "small", 2048) as fs, Outbox(fs.path / "q.sqlite") as box:
        kept = [box.put("t", f"before-{i}".encode()) for i in range(5)]
        fs.fill()
        with caplog.at_level("WARNING", logger="edge.link.outbox"):
            results = [box.put("t", f"full-{i}".encode() + b"x" * 3000) for i in range(40)]
        lost = results.count(None)
        assert lost > 0 and box.write_errors == lost
        assert box.depth() == 5 + 40 - lost
        failures = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(failures) == 1 and "outbox_write_errors" in failures[0].getMessage()

        with pytest.raises(OutboxError, match="cannot remove delivered"):
            box.ack_many([i for i in kept if i is not None] + [r for r in results if r is not None])
        assert box.depth() == 5 + 40 - lost  # nothing half-removed

        fs.free()
        caplog.clear()
        with caplog.at_level("WARNING", logger="edge.link.outbox"):
            after = box.put("t", b"after")
        assert after is not None
        assert f"{lost} messages were lost" in caplog.text
        box.ack_many([i for i in kept if i is not None])
        payloads = [m.payload for m in box.peek(100)]
        assert payloads[-1] == b"after" and not any(p.startswith(b"before") for p in payloads)
        assert box.write_errors == lost


def test_closing_twice_is_harmless(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "q.sqlite")
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.ack_many([1])


def test_messages_put_while_a_commit_runs_share_the_next_transaction_and_each_put_returns_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path) as box:
        begins: list[str] = []
        box._db.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
        ids: dict[str, int | None] = {}

        def producer(name: str) -> None:
            ids[name] = box.put("t", name.encode())

        with box._lock:  # the first producer's commit stalls here, as on a slow disk
            first = threading.Thread(target=producer, args=("first",))
            first.start()
            while not box._committing:
                threading.Event().wait(0.001)
            others = [threading.Thread(target=producer, args=(f"m{i}",)) for i in range(5)]
            for t in others:
                t.start()
            while len(box._waiting) < 5:
                threading.Event().wait(0.001)
        for t in [first, *others]:
            t.join(timeout=10)
        assert len(begins) == 2, "the five messages that waited must go in one transaction"
        assert all(isinstance(i, int) for i in ids.values()) and len(set(ids.values())) == 6
        on_disk = sqlite3.connect(path).execute("SELECT payload FROM messages ORDER BY id").fetchall()
        assert on_disk[0][0] == b"first" and len(on_disk) == 6 == box.depth()


def test_put_many_writes_a_batch_in_order_in_one_transaction_and_returns_each_committed_id(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path, max_messages=5) as box:
        before = put(box, "t/0", b"zero")
        begins: list[str] = []
        box._db.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
        ids = box.put_many([(f"t/{i}", f"m{i}".encode()) for i in range(1, 7)])
        assert len(begins) == 1
        assert all(i is not None for i in ids) and ids == sorted(ids) and ids[0] > before
        # Six new plus one old exceed the bound of five: the two oldest go, counted.
        assert [(m.topic, m.payload) for m in box.peek(10)] == [(f"t/{i}", f"m{i}".encode()) for i in range(2, 7)]
        assert box.dropped == 2 and box.depth() == 5
        assert [m.id for m in box.peek(10)] == ids[1:]
        assert box.put_many([]) == []
    assert len(sqlite3.connect(path).execute("SELECT id FROM messages").fetchall()) == 5


def test_put_many_refuses_a_batch_with_a_bad_message_without_writing_any(tmp_path: Path) -> None:
    with Outbox(tmp_path / "q.sqlite") as box:
        with pytest.raises(OutboxError, match="without a topic"):
            box.put_many([("t", b"fine"), ("", b"no topic")])
        with pytest.raises(OutboxError, match="QoS"):
            box.put_many([("t", b"fine")], qos=5)
        assert box.depth() == 0


def test_put_many_on_a_full_disk_loses_the_whole_batch_counted_and_nothing_half_written(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 2048) as fs, Outbox(fs.path / "q.sqlite") as box:
        put(box, "t", b"kept")
        fs.fill()
        ids = box.put_many([("t", f"big-{i}".encode() + b"x" * 3000) for i in range(40)])
        # One batch is one transaction: all of it is refused, counted, and none of it is on disk.
        assert ids == [None] * 40 and box.write_errors == 40
        assert [m.payload for m in box.peek(100)] == [b"kept"] and box.depth() == 1
        fs.free()
        assert box.put_many([("t", b"after")]) != [None]
        assert [m.payload for m in box.peek(100)] == [b"kept", b"after"]
