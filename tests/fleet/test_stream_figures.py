"""The fleet keeps each device's latest per-stream figures from its telemetry, validated and bounded."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from sqlalchemy import event

from fleet.db.store import FleetStore
from fleet.db.streams import MAX_STREAMS_PER_DEVICE
from fleet.device_removal import remove_device
from fleet.ingest import Ingest, Message
from fleet.metrics_export import FleetMetricsExporter, StoreSnapshot
from fleet.sim.streams import StreamsSim
from tests.fleet.conftest import Clock
from tests.fleet.poison import telemetry_doc

BASE = "edgeferry/lab"


def _send(ingest: Ingest, device: str, doc: dict[str, Any]) -> None:
    ingest.process([(f"{BASE}/{device}/telemetry", json.dumps(doc).encode(), False, 1_700_000_000_000)])


def _streams(store: FleetStore, device: str) -> dict[str, dict[str, float]]:
    got = store.streams.get(device)
    return {} if got is None else got.streams


def test_a_multi_stream_report_is_kept_per_stream_and_the_next_replaces_it(store: FleetStore) -> None:
    ingest = Ingest(store)
    sim = StreamsSim(3, "s", stalled="cam2")
    doc = telemetry_doc("cam-box", 1, streams=sim.tick(1.0))
    _send(ingest, "cam-box", doc)
    kept = _streams(store, "cam-box")
    assert sorted(kept) == ["cam0", "cam1", "cam2"]
    assert kept["cam0"]["connected"] == 1.0 and kept["cam2"]["connected"] == 0.0
    assert kept["cam1"]["processed_fps"] == doc["streams"]["cam1"]["processed_fps"]
    # A stream removed on the agent disappears with its next report; an older report changes nothing.
    newer = telemetry_doc("cam-box", 2, streams={"cam0": {"frames": 99}})
    newer["ts"] = doc["ts"] + 1000
    _send(ingest, "cam-box", newer)
    older = telemetry_doc("cam-box", 0, streams={"old": {"frames": 1}})
    older["ts"] = doc["ts"] - 1000
    _send(ingest, "cam-box", older)
    assert _streams(store, "cam-box") == {"cam0": {"frames": 99.0}}


def test_a_report_with_a_figure_out_of_range_is_refused_and_keeps_nothing(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"cam0": {"connected": 7}}))
    assert _streams(store, "cam-box") == {}
    assert store.device("cam-box").refused == 1
    assert "connected" in (store.device("cam-box").last_refused or "")


def test_streams_beyond_the_per_device_bound_are_counted_not_kept(store: FleetStore) -> None:
    ingest = Ingest(store)
    many = {f"s{i:02d}": {"frames": i} for i in range(MAX_STREAMS_PER_DEVICE + 5)}
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams=many))
    got = store.streams.get("cam-box")
    assert got is not None and len(got.streams) == MAX_STREAMS_PER_DEVICE and got.dropped == 5
    assert "s36" not in got.streams and "s00" in got.streams


def test_the_fleet_metrics_carry_a_stream_label(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"door": {"processed_fps": 12.5, "frames": 40}}))
    scrape = FleetMetricsExporter(StoreSnapshot(store)).render().decode()
    assert 'edgeferry_device_stream_processed_fps{device="cam-box",fleet="lab",stream="door"} 12.5' in scrape
    assert 'edgeferry_device_stream_frames_total{device="cam-box",fleet="lab",stream="door"} 40.0' in scrape


class _Publisher:
    """Accepts every clear (the broker side is tested in tests/fleet/test_tombstones.py and the CLI tests)."""

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        pass


def test_a_removed_device_leaves_no_streams_behind(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"door": {"frames": 3}}))
    assert _streams(store, "cam-box")
    remove_device(store, _Publisher(), "cam-box")  # type: ignore[arg-type]
    assert _streams(store, "cam-box") == {}


def test_a_replayed_report_from_the_outbox_changes_nothing(store: FleetStore) -> None:
    ingest = Ingest(store)
    live = telemetry_doc("cam-box", 2, streams={"door": {"frames": 5}})
    _send(ingest, "cam-box", live)
    replayed = telemetry_doc("cam-box", 1, streams={"old": {"frames": 1}}, replayed=True)
    replayed["ts"] = live["ts"] + 1000  # even a later device clock: an outbox replay is history, not now
    _send(ingest, "cam-box", replayed)
    assert _streams(store, "cam-box") == {"door": {"frames": 5.0}}


def test_an_expired_device_leaves_no_streams_behind(store: FleetStore, clock: Clock) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"door": {"frames": 3}}))
    assert _streams(store, "cam-box")
    clock.advance(3600)
    assert store.expire_devices(60_000) == ["cam-box"]
    assert _streams(store, "cam-box") == {}


_ON_STREAMS = re.compile(r"\bdevice_streams\b", re.IGNORECASE)


class _Writes:
    """Commits on the store's engine, and executions of statements on the device_streams table (an executemany
    counts once per row), whichever way the store reaches the driver."""

    def __init__(self, store: FleetStore) -> None:
        self.commits = 0
        self.stream_statements = 0
        engine = store.engine
        event.listen(engine, "commit", self._commit)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", self._trace)
        else:
            event.listen(engine, "before_cursor_execute", self._executed)
        engine.dispose()  # pooled connections predate the listener

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def _trace(self, dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.set_trace_callback(self._sql)

    def _sql(self, sql: str) -> None:
        if _ON_STREAMS.search(sql):
            self.stream_statements += 1

    def _executed(self, _conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if _ON_STREAMS.search(sql):
            self.stream_statements += len(params) if many else 1


def _batch(devices: list[str], seq: int, now: int, sim: StreamsSim, ts: int) -> list[Message]:
    return [(f"{BASE}/{d}/telemetry", json.dumps({**telemetry_doc(d, seq, streams=sim.tick(1.0)), "ts": ts}).encode(),
             False, now) for d in devices]


def test_a_batch_of_multi_stream_reports_keeps_its_streams_in_one_statement_beside_its_samples(
    store: FleetStore, clock: Clock,
) -> None:
    ingest = Ingest(store)
    devices = [f"cam-{i:03d}" for i in range(200)]
    sim = StreamsSim(4, "w")
    ingest.process(_batch(devices, 1, clock(), sim, 1_765_000_000_000))  # registers them, streams stored
    clock.advance(1)
    writes = _Writes(store)
    ingest.process(_batch(devices, 2, clock(), sim, 1_765_000_001_000))

    assert writes.stream_statements == 1, f"{writes.stream_statements} statements on device_streams for one batch"
    assert writes.commits == 2, "the registry's transaction, then the samples' with the streams"
    kept = store.streams.all()
    assert sorted(kept) == devices
    assert all(k.ts_ms == 1_765_000_001_000 and sorted(k.streams) == ["cam0", "cam1", "cam2", "cam3"]
               for k in kept.values())
    assert len(store.telemetry_window("cam-007", 0, 2**62)) == 2


def test_a_scrape_reads_the_streams_of_only_the_devices_it_shows(store: FleetStore, clock: Clock,
                                                                 monkeypatch: Any) -> None:
    ingest = Ingest(store)
    devices = [f"cam-{i:02d}" for i in range(12)]
    ingest.process(_batch(devices, 1, clock(), StreamsSim(2, "m"), 1_765_000_000_000))
    asked: list[list[str] | None] = []
    read_all = store.streams.all

    def spy(device_ids: Any = None) -> Any:
        asked.append(None if device_ids is None else sorted(device_ids))
        return read_all(device_ids)

    monkeypatch.setattr(store.streams, "all", spy)
    scrape = FleetMetricsExporter(StoreSnapshot(store), max_device_series=3).render().decode()

    assert asked == [devices[:3]], "one read per scrape, of the shown devices' streams only"
    shown = {line.split('device="')[1].split('"')[0] for line in scrape.splitlines()
             if line.startswith("edgeferry_device_stream_")}
    assert shown == set(devices[:3])


def _refuse_streams_of(store: FleetStore, device: str) -> None:
    """A database that refuses one device's stream row (a trigger), whatever else the transaction holds."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_streams BEFORE INSERT ON device_streams "
                                 f"WHEN NEW.device_id = '{device}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        else:
            conn.exec_driver_sql(f"CREATE FUNCTION refuse_streams() RETURNS trigger AS $$ BEGIN IF NEW.device_id = "
                                 f"'{device}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ "
                                 "LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER refuse_streams BEFORE INSERT ON device_streams "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse_streams()")


def test_a_stream_row_the_database_refuses_costs_the_device_only_its_streams(store: FleetStore, clock: Clock) -> None:
    ingest = Ingest(store)
    _refuse_streams_of(store, "cam-bad")
    ingest.process(_batch(["cam-ok", "cam-bad"], 1, clock(), StreamsSim(2, "r"), 1_765_000_000_000))

    assert len(store.telemetry_window("cam-bad", 0, 2**62)) == 1, "its sample is kept"
    assert store.device("cam-bad").refused == 0, "its report is not refused"
    assert store.streams.get("cam-bad") is None and sorted(_streams(store, "cam-ok")) == ["cam0", "cam1"]
    assert len(store.telemetry_window("cam-ok", 0, 2**62)) == 1
    assert ingest.stats.streams_lost == 1
