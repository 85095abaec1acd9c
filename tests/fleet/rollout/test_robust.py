"""Robust figures against hand computations: medians and their small-cohort fallback, capped class mixes, result
bounds from fps x window, outliers and readings that jump by orders of magnitude."""

from __future__ import annotations

import pytest

from fleet.rollout.gates import Sample
from fleet.rollout.robust import (
    allowed_results,
    cohort_mix,
    cohort_value,
    jumps,
    outliers,
    result_suspects,
    scaled,
)


def test_cohort_value_is_the_median_or_the_strictest_of_few() -> None:
    assert cohort_value([20.0, 21.0, 1e9], "<=") == 21.0
    assert cohort_value([20.0, 1e9], "<=") == 20.0  # an upper limit: the smallest control is the strictest
    assert cohort_value([0.9, 0.2], ">=") == 0.9


def test_outliers_need_two_peers_and_two_orders_of_magnitude() -> None:
    assert outliers({"a": 20.0, "b": 1e9}) == {}  # who is off is ambiguous with one peer
    assert outliers({"a": 20.0, "b": 22.0, "c": 1e9}) == {"c": 22.0}  # the median of three ignores one liar
    assert outliers({"a": 20.0, "b": 22.0, "c": 1900.0}) == {}  # 86x: a real device can be that slow
    assert outliers({"a": 20.0, "b": 22.0, "c": 0.01}) == {"c": 20.0}


def test_jumps_flag_readings_spanning_orders_of_magnitude() -> None:
    assert jumps([20.0, 25.0, 19.0]) is None
    assert jumps([20.0, 1e9]) == "its readings jump from 20 to 1e+09 (over 100x)"
    assert jumps([0.0, 5.0]) is None  # zeros say nothing about scale


def test_cohort_mix_caps_each_device_at_the_median_count() -> None:
    honest = [Sample(1, class_counts={"a": 50, "b": 50})]
    mix, evidence = cohort_mix({"h1": honest, "h2": honest, "liar": [Sample(1, class_counts={"a": 10**12})]})
    assert evidence == 300  # 100 + 100 + the liar capped at the median 100
    assert mix == pytest.approx({"a": (0.5 + 0.5 + 1.0) / 3, "b": (0.5 + 0.5) / 3})
    assert cohort_mix({}) == ({}, 0.0)


def test_results_are_bounded_by_the_reported_frame_rate() -> None:
    reports = [Sample(i * 1000, {"fps": f}, {"a": 10}) for i, f in enumerate((8.0, 10.0))]
    assert allowed_results(reports, 60) == 10.0 * 60 * 1.5 + 2
    assert allowed_results([Sample(1, {}, {"a": 1})], 60) is None
    fleet = {"h1": reports, "h2": reports, "slow": [Sample(1, {"fps": 0.05}, {"a": 1})]}
    assert result_suspects(fleet, 60, {"h1": 10.0, "h2": 10.0, "slow": 0.05}) == {}  # slow is no lie


def test_only_free_scaling_gauges_get_the_order_of_magnitude_tests() -> None:
    assert scaled("e2e_ms_p95") and scaled("fps")
    assert not scaled("conf_mean") and not scaled("low_conf_share") and not scaled("thread_errors")
