"""Latency summaries: nearest-rank percentiles, so every figure is a latency that was observed."""

from __future__ import annotations

import pytest

from cloud.errors import ExportError
from cloud.latency import percentiles_ms, time_calls


def test_percentiles_are_observed_values_in_ms() -> None:
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p50, p99 = percentiles_ms(seconds)
    assert p50 == pytest.approx(50.0)
    assert p99 == pytest.approx(99.0)


def test_one_outlier_shows_in_p99_not_p50() -> None:
    p50, p99 = percentiles_ms([0.001] * 99 + [0.5])
    assert p50 == pytest.approx(1.0)
    assert p99 == pytest.approx(1.0)
    _, p99_two = percentiles_ms([0.001] * 98 + [0.5, 0.5])
    assert p99_two == pytest.approx(500.0)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ExportError):
        percentiles_ms([])


def test_time_calls_runs_warmup_untimed() -> None:
    calls: list[int] = []
    samples = time_calls(lambda: calls.append(1), runs=5, warmup=3)
    assert len(calls) == 8
    assert len(samples) == 5 and all(s >= 0 for s in samples)
