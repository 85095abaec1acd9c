"""The registry's write path at scale: a batch of known devices' telemetry touches the devices table in a few
statements, not one per device; the records this worker keeps in memory never cost another writer's change, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event, func, select

from fleet.db.batch_write import insert_samples
from fleet.db.schema import telemetry_samples
from fleet.db.store import FleetStore
from fleet.ingest import WRITE_ERRORS, Ingest, Message
from tests.fleet.conftest import Clock
from tests.fleet.poison import state_doc, telemetry_doc

BASE = "edgeferry/lab"
DEVICES = 1000
_ON_DEVICES = re.compile(r"\bdevices\b", re.IGNORECASE)


def _telemetry(devices: list[str], seq: int, now: int) -> list[Message]:
    return [(f"{BASE}/{d}/telemetry", json.dumps(telemetry_doc(d, seq, fps=float(seq))).encode(), False, now)
            for d in devices]


class _DeviceStatements:
    """Executions of statements on the devices table (an executemany counts once per row: the database runs it
    once per row), whichever way the store reaches the driver."""

    def __init__(self, store: FleetStore) -> None:
        self.count = 0
        engine = store.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", self._trace)
        else:
            event.listen(engine, "before_cursor_execute", self._executed)
        engine.dispose()  # pooled connections predate the listener

    def _trace(self, dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.set_trace_callback(self._sql)

    def _sql(self, sql: str) -> None:
        if _ON_DEVICES.search(sql):
            self.count += 1

    def _executed(self, _conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if _ON_DEVICES.search(sql):
            self.count += len(params) if many else 1


def test_a_batch_of_known_devices_touches_the_registry_in_a_few_statements(store: FleetStore, clock: Clock) -> None:
    ingest = Ingest(store)
    devices = [f"cam-{i:04d}" for i in range(DEVICES)]
    ingest.process(_telemetry(devices, 1, clock()))  # registers them
    clock.advance(1)
    counted = _DeviceStatements(store)
    ingest.process(_telemetry(devices, 2, clock()))

    assert counted.count <= 10, f"{counted.count} statements on the devices table for one batch of {DEVICES}"
    records = store.list_devices()
    assert len(records) == DEVICES
    assert all(r.last_telemetry_ms == clock() and r.rev == 2 for r in records)
    assert len(store.telemetry_window("cam-0007", 0, 2**62)) == 2


def test_another_writers_change_survives_this_workers_remembered_record(
    store: FleetStore, store_factory: Any, clock: Clock
) -> None:
    mine, theirs = Ingest(store), Ingest(store_factory())
    now = clock()
    mine.process(_telemetry(["cam-1"], 1, now))
    theirs.process([(f"{BASE}/cam-1/state", json.dumps(state_doc("cam-1", config_digest="d9")).encode(), False,
                     now)])
    clock.advance(1)
    mine.process(_telemetry(["cam-1"], 2, clock()))

    rec = store.device("cam-1")
    assert (rec.config_digest, rec.groups, rec.telemetry_interval_s) == ("d9", ("north",), 0.5)
    assert rec.last_telemetry_ms == clock() and rec.rev == 3


def test_a_device_removed_elsewhere_registers_anew_with_its_next_message(
    store: FleetStore, store_factory: Any, clock: Clock
) -> None:
    mine, other = Ingest(store), store_factory()
    mine.process(_telemetry(["cam-1"], 1, clock()))
    later = telemetry_doc("cam-1", 1, boot="boot-b")
    mine.process([(f"{BASE}/cam-1/telemetry", json.dumps({**later, "ts": later["ts"] + 1000}).encode(), False,
                   clock())])
    assert store.device("cam-1").restarts == 1
    assert other.remove_device("cam-1")
    clock.advance(1)
    mine.process(_telemetry(["cam-1"], 2, clock()))

    rec = store.device("cam-1")
    assert (rec.restarts, rec.first_seen_ms, rec.rev) == (0, clock(), 1)


def test_samples_the_database_refuses_raise_what_ingest_falls_back_on(store: FleetStore, clock: Clock) -> None:
    good = ("lab", "cam-1", clock(), clock(), "boot-a", 1, '{"fps": 1.0}', "{}")
    with pytest.raises(WRITE_ERRORS), store.engine.begin() as conn:
        insert_samples(conn, [good, (*good[:5], 2**64, *good[6:])])  # beyond BIGINT
    with store.engine.begin() as conn:
        insert_samples(conn, [good])
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(telemetry_samples)).scalar_one() == 1
