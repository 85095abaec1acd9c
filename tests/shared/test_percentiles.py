"""One percentile definition: nearest rank, equal to numpy's inverted_cdf, and the same figure in cloud and device."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.latency import percentiles_ms
from edge.percentiles import RollingWindow
from shared.percentiles import nearest_rank, percentiles


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        nearest_rank([], 50)
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], 0)
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], 100.5)


def test_unsorted_values_are_sorted_once() -> None:
    assert percentiles([3.0, 1.0, 2.0, 10.0], (25, 50, 75, 100)) == {25: 1.0, 50: 2.0, 75: 3.0, 100: 10.0}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=400),
    st.sampled_from([0.1, 1, 25, 50, 90, 95, 99, 99.9, 100]),
)
def test_equals_numpy_inverted_cdf(values: list[float], p: float) -> None:
    assert nearest_rank(sorted(values), p) == float(np.percentile(values, p, method="inverted_cdf"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=10.0, allow_nan=False), min_size=1, max_size=300))
def test_the_cloud_gate_and_the_device_telemetry_report_the_same_p50_and_p99(seconds: list[float]) -> None:
    window = RollingWindow(size=len(seconds))
    for s in seconds:
        window.add(s * 1000.0)
    device = window.percentiles((50, 99))
    assert percentiles_ms(seconds) == (device[50], device[99])
