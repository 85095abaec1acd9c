"""Rolling-window percentiles: exact nearest-rank figures (shared.percentiles) over a bounded window."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.percentiles import RollingWindow, StageWindows
from shared.metrics import BY_NAME


def test_known_window_gives_textbook_nearest_rank() -> None:
    w = RollingWindow(size=100)
    for v in range(1, 101):
        w.add(float(v))
    assert w.percentiles((50, 95, 99, 100)) == {50: 50.0, 95: 95.0, 99: 99.0, 100: 100.0}


def test_small_window_reports_observed_values_not_interpolations() -> None:
    w = RollingWindow(size=10)
    for v in (10.0, 20.0, 1000.0):
        w.add(v)
    # p99 of three frames is the slowest frame, p50 the middle one.
    assert w.percentiles((50, 99)) == {50: 20.0, 99: 1000.0}


def test_old_samples_fall_out_of_the_window() -> None:
    w = RollingWindow(size=3)
    for v in (500.0, 1.0, 2.0, 3.0):
        w.add(v)
    assert len(w) == 3
    assert w.percentiles((100,)) == {100: 3.0}


def test_empty_window_reports_nothing_and_non_finite_samples_are_ignored() -> None:
    w = RollingWindow(size=4)
    assert w.percentiles() == {}
    w.add(math.nan)
    w.add(math.inf)
    assert len(w) == 0
    w.add(7.0)
    assert w.percentiles((50, 99)) == {50: 7.0, 99: 7.0}


def test_bad_window_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        RollingWindow(0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=64),
    st.sampled_from([1, 25, 50, 90, 95, 99, 100]),
)
def test_matches_numpy_inverted_cdf_over_the_last_samples(values: list[float], size: int, p: int) -> None:
    w = RollingWindow(size=size)
    for v in values:
        w.add(v)
    expected = float(np.percentile(values[-size:], p, method="inverted_cdf"))
    assert w.percentiles((p,))[p] == expected


def test_stage_windows_report_declared_metric_names_only_for_stages_with_samples() -> None:
    stages = StageWindows(size=16)
    for ms in (1.0, 2.0, 3.0, 4.0):
        stages.record("infer", ms)
    stages.record("e2e", 9.0)
    values = stages.values()
    assert values == {
        "infer_ms_p50": 2.0, "infer_ms_p95": 4.0, "infer_ms_p99": 4.0,
        "e2e_ms_p50": 9.0, "e2e_ms_p95": 9.0, "e2e_ms_p99": 9.0,
    }
    assert all(k in BY_NAME for k in values)
    assert len(StageWindows().values()) == 0
    with pytest.raises(ValueError, match="unknown stage"):
        stages.record("decode", 1.0)
