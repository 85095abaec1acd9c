"""Frame statistics as telemetry reports them: declared metric names, fps over the window, swap pauses."""

from __future__ import annotations

import pytest

from edge.frame_stats import FrameStats
from shared.metrics import LATENCY_BUCKETS_S, STAGES, unknown_metrics


def test_fps_counts_results_in_the_window_and_decays_when_frames_stop() -> None:
    stats = FrameStats(fps_window_s=2.0)
    for i in range(40):
        stats.record(0.001, 0.001, 0.002, 0.0, 0.0, 0.005, end=100.0 + i * 0.05)  # 20 results/s for 2 s
    assert stats.fps(now=101.95) == pytest.approx(40 / 1.95)
    assert stats.fps(now=102.0) == pytest.approx(20.0)
    assert stats.fps(now=103.01) == pytest.approx(19 / 2.0)  # results after 101.01 s are still in the window
    assert stats.fps(now=110.0) == 0.0


def test_values_use_declared_metric_names_in_milliseconds() -> None:
    stats = FrameStats()
    assert stats.values(now=0.0) == {"fps": 0.0, "frames": 0.0, "swaps": 0.0}
    for ms in (1, 2, 3, 4):
        stats.record(ms / 1e3, 0.0, ms / 1e3, 0.0, 0.0, 2 * ms / 1e3, end=float(ms))
    stats.record_swap(0.0125)
    values = stats.values(now=4.0)
    assert unknown_metrics(values) == []
    assert values["infer_ms_p50"] == pytest.approx(2.0) and values["infer_ms_p99"] == pytest.approx(4.0)
    assert values["e2e_ms_p95"] == pytest.approx(8.0)
    assert (values["frames"], values["swaps"], values["swap_pause_ms"]) == (4.0, 1.0, pytest.approx(12.5))


def test_waiting_and_errors_are_counted_apart_from_frames() -> None:
    stats = FrameStats()
    stats.record_waiting()
    stats.record_error()
    stats.record_error()
    assert (stats.frames, stats.waiting, stats.errors) == (0, 1, 2)


def test_histograms_count_every_frame_since_boot_per_stage_in_seconds() -> None:
    stats = FrameStats(window=2)  # the percentile window forgets; the histogram does not
    for e2e in (0.0004, 0.004, 0.04, float("nan")):
        stats.record(0.0, 0.0, 0.0, 0.0, 0.0, e2e, end=1.0)
    snap = stats.histograms()
    assert set(snap) == set(STAGES)
    e2e_hist = snap["e2e"]
    assert e2e_hist.bounds == LATENCY_BUCKETS_S and len(e2e_hist.cumulative) == len(LATENCY_BUCKETS_S) + 1
    le = dict(zip(e2e_hist.bounds, e2e_hist.cumulative, strict=False))
    assert (le[0.00025], le[0.0005], le[0.005], le[0.05], e2e_hist.cumulative[-1]) == (0, 1, 2, 3, 3)
    assert e2e_hist.count == 3 and e2e_hist.sum_s == pytest.approx(0.0444)  # NaN is ignored, not counted
    assert snap["infer"].count == 4 and snap["infer"].cumulative[0] == 4  # 0 s falls in the first bucket


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    stats = FrameStats()
    stats.record(0.0, 0.0, 0.001, 0.0, 0.0, 0.0, end=1.0)
    le = dict(zip(LATENCY_BUCKETS_S, stats.histograms()["infer"].cumulative, strict=False))
    assert (le[0.0005], le[0.001]) == (0, 1)  # Prometheus buckets are "less than or equal"
