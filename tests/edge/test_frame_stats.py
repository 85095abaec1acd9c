"""Frame statistics as telemetry reports them: declared metric names, fps over the window, swap pauses."""

from __future__ import annotations

import pytest

from edge.frame_stats import FrameStats
from shared.metrics import unknown_metrics


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
