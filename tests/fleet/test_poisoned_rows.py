"""Rows an older version stored from a hostile device (NaN, 1e308, integers beyond 64 bits, wrong types) no longer
break any read: the registry, telemetry, history, /metrics and `edgeferry fleet devices`/`show` answer."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from sqlalchemy import text

from fleet.db.store import FleetStore
from fleet.metrics_export import FleetMetricsExporter, StoreSnapshot
from tests.fleet.conftest import Clock

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
BIG = "9" * 401


def _poison(store: FleetStore, now: int) -> None:
    """Write, with plain SQL, what the old ingest let through on this back-end."""
    pg = store.engine.dialect.name == "postgresql"
    huge = "'Infinity'" if pg else "1e308"
    far = "9223372036854775807" if pg else "1e20"  # PostgreSQL's BIGINT holds no more; SQLite stores a REAL
    hardware = '{"temp": 1e400}' if pg else '{"temp": NaN, "n": ' + BIG + "}"
    figures = '{"fps": 1e400, "frames": ' + BIG + ', "rss_mb": 12.5}' if pg else \
        '{"fps": NaN, "frames": ' + BIG + ', "rss_mb": 12.5, "cpu_pct": Infinity}'
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO devices (fleet, device_id, rev, status, restarts, state_ts_ms, boot_ts_ms, model_version,"
            " last_seen_ms, hardware, unsigned_commands, degraded, reported_groups, telemetry_interval_s)"
            f" VALUES ('lab', 'bad', 1, 'online', 0, {far}, {far}, {far}, :now, '{hardware}', false,"
            f" '{{\"x\": 5}}', '[\"north\", 7]', {huge})"), {"now": now})
        conn.execute(text(
            "INSERT INTO telemetry_samples (fleet, device_id, ts_ms, received_ms, boot_id, seq, figures, class_counts)"
            f" VALUES ('lab', 'bad', {far}, :now, 'b', {far}, '{figures}', '{{\"cat\": {BIG}}}')"), {"now": now})
        conn.execute(text(
            "INSERT INTO telemetry_samples (fleet, device_id, ts_ms, received_ms, boot_id, seq, figures, class_counts)"
            f" VALUES ('lab', 'bad', :now, :now, 'b', 1, '{figures}', '{{}}')"), {"now": now})
        conn.execute(text(
            "INSERT INTO telemetry_history (fleet, device_id, bucket_ms, samples, figures)"
            f" VALUES ('lab', 'bad', :now, 1, '{figures}')"), {"now": now})


def test_reads_answer_over_poisoned_rows(store: FleetStore, clock: Clock, db_url: str, tmp_path: Path) -> None:
    store.devices.update("good", lambda r: replace(r, reported_status="online", last_seen_ms=clock(),
                                                   telemetry_interval_s=5.0))
    _poison(store, clock())
    bad = store.device("bad")
    assert bad.telemetry_interval_s is None and bad.status == "online"  # the default interval applies
    assert bad.state_ts_ms in (None, 2**63 - 1) and bad.reported_groups == ("north",)
    assert [r.device_id for r in store.list_devices()] == ["bad", "good"]
    assert store.list_devices(group="north")[0].device_id == "bad"
    samples = store.telemetry_window("bad", 0, 2**62)
    assert samples and all(s.figures == {"rss_mb": 12.5} for s in samples)
    assert store.telemetry.history("bad", 0, 2**62)[0][2] == {"rss_mb": 12.5}
    scrape = FleetMetricsExporter(StoreSnapshot(store)).render().decode()
    assert 'edgeferry_device_rss_bytes{device="bad",fleet="lab"} 1.31072e+07' in scrape

    conf = ["--set", f"database.url={db_url}", "--set", "fleet=lab"]
    listed = subprocess.run([EDGEFERRY, "fleet", "devices", "--json", *conf], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [d["device_id"] for d in json.loads(listed.stdout)] == ["bad", "good"]
    table = subprocess.run([EDGEFERRY, "fleet", "devices", *conf], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "bad" in table.stdout, table.stderr
    shown = subprocess.run([EDGEFERRY, "fleet", "show", "bad", *conf], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["telemetry_interval_s"] is None
