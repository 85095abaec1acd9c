"""The leader's history pass at scale: it streams the samples it downsamples instead of holding them all, so a
bucket of 10,000 devices at 1 Hz does not cost the worker hundreds of MiB, on SQLite and PostgreSQL."""

from __future__ import annotations

import tracemalloc

from fleet.db.store import FleetStore
from fleet.registry import TelemetrySample
from shared.metrics import METRICS
from tests.fleet.conftest import Clock

DEVICES, PER_DEVICE = 200, 50
BUCKET_MS = 10_000


def test_a_history_pass_holds_running_sums_not_every_sample(store: FleetStore, clock: Clock) -> None:
    t0 = clock() - clock() % BUCKET_MS
    figures = {m.name: float(i) for i, m in enumerate(METRICS)}  # every figure an agent reports
    counts = {str(i): i for i in range(10)}
    for k in range(PER_DEVICE):
        store.telemetry.add([(f"cam-{d:03d}", TelemetrySample(t0 + k, {**figures, "fps": float(k)}, counts,
                                                              "boot-a", k + 1), t0 + k * 50)
                             for d in range(DEVICES)])
    tracemalloc.start()
    try:
        assert store.telemetry.rebuild_history(t0, t0 + BUCKET_MS, BUCKET_MS) == DEVICES
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    samples = DEVICES * PER_DEVICE
    assert peak < 16 * 2**20, f"the pass over {samples} samples peaked at {peak / 2**20:.0f} MiB"
    (bucket, n, means), = store.telemetry.history("cam-007", 0, 2**62)
    assert (bucket, n) == (t0, PER_DEVICE)
    assert means["fps"] == sum(range(PER_DEVICE)) / PER_DEVICE and means["class_counts"] == {
        label: c * PER_DEVICE for label, c in counts.items()}


def test_the_history_pass_reads_rows_an_older_version_stored_unchecked_as_the_sanitizer_does(
    store: FleetStore, clock: Clock,
) -> None:
    now = clock() - clock() % BUCKET_MS
    pg = store.engine.dialect.name == "postgresql"
    # What an older ingest let through on each back-end (PostgreSQL's JSON refuses NaN and text that is not JSON).
    rows = [("a", '{"fps": 1e400, "rss_mb": 12.5, "frames": "x"}' if pg else '{"fps": NaN, "rss_mb": 12.5}',
             '{"cat": 2, "dog": -1, "owl": 1.5}'),
            ("a", '{"rss_mb": 14.5}', '{"cat": 1}'),
            ("b", '{"rss_mb": 3.0, "fps": 2}', '{"cat": "many"}'),
            *([] if pg else [("c", "not json", "[]")])]
    json_value = "CAST(%s AS JSON)" if pg else "?"
    with store.engine.begin() as conn:
        for seq, (device, figures, counts) in enumerate(rows):
            conn.exec_driver_sql(
                "INSERT INTO telemetry_samples (fleet, device_id, ts_ms, received_ms, boot_id, seq, figures, "
                f"class_counts) VALUES ('lab', '{device}', {now}, {now + seq}, 'b', {seq}, {json_value}, "
                f"{json_value})", (figures, counts))
    store.telemetry.rebuild_history(now, now + BUCKET_MS * 2, BUCKET_MS)
    assert store.telemetry.history("a", 0, 2**62) == [(now, 2, {"rss_mb": 13.5, "class_counts": {"cat": 3}})]
    assert store.telemetry.history("b", 0, 2**62) == [(now, 1, {"fps": 2.0, "rss_mb": 3.0})]
    if not pg:
        assert store.telemetry.history("c", 0, 2**62) == [(now, 1, {})]
