"""The durable outbox: FIFO order, bounded with oldest-first drops, survives reopening, safe across threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge.link.outbox import Outbox, OutboxError


def test_fifo_peek_does_not_remove_and_ack_does(tmp_path: Path) -> None:
    with Outbox(tmp_path / "q.sqlite", max_messages=10) as box:
        ids = [box.put("t/a", f"m{i}".encode()) for i in range(3)]
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
        first = box.put("a/b", b"\x00binary\xff", qos=1)
        box.put("a/c", b"two", qos=0, retain=True)
    with Outbox(path) as box:
        msgs = box.peek(10)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in msgs] == [
            ("a/b", b"\x00binary\xff", 1, False),
            ("a/c", b"two", 0, True),
        ]
        # ids keep growing after a restart, so order across runs is kept
        assert box.put("a/d", b"three") > msgs[-1].id > first


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
