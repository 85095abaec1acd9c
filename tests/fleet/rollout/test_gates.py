"""Gate arithmetic against hand computations: the class-mix PSI, counter growth across restarts, ratios."""

from __future__ import annotations

import math

import pytest

from fleet.rollout.gates import Sample, class_mix, compared, counter_increase, device_figure, psi
from fleet.rollout.plan import MetricGate


def test_psi_matches_hand_computation() -> None:
    # (0.6 - 0.5) ln(0.6 / 0.5) + (0.4 - 0.5) ln(0.4 / 0.5) = 0.018232 + 0.022314
    assert psi({"a": 60, "b": 40}, {"a": 50, "b": 50}) == pytest.approx(0.040546, abs=1e-6)
    # 0.4 ln(1.8) + (-0.4) ln(0.2) = 0.235115 + 0.643775
    assert psi({"a": 90, "b": 10}, {"a": 50, "b": 50}) == pytest.approx(0.878890, abs=1e-6)
    assert psi({"a": 7, "b": 3}, {"a": 70, "b": 30}) == pytest.approx(0.0)


def test_psi_class_missing_on_one_side_uses_the_floor_share() -> None:
    # a: 0.5 ln 2; b: (1e-4 - 0.5) ln(1e-4 / 0.5)
    expected = 0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert psi({"a": 100}, {"a": 50, "b": 50}) == pytest.approx(expected)
    assert expected == pytest.approx(4.604319, abs=1e-6)
    with pytest.raises(ValueError, match="both cohorts"):
        psi({}, {"a": 1})


def test_class_mix_sums_every_device_and_sample() -> None:
    mix = class_mix({"d1": [Sample(1, class_counts={"3": 5, "7": 1})], "d2": [Sample(2, class_counts={"3": 2})]})
    assert mix == {"3": 7, "7": 1}


def test_counter_increase_counts_a_restart_as_a_reset() -> None:
    assert counter_increase([2, 2, 5]) == 3
    assert counter_increase([4, 6, 1, 2]) == 2 + 1 + 1  # restarted at 1: those errors count too
    gate = MetricGate(metric="thread_errors", op="<=", threshold=0, aggregate="increase", min_samples=2)
    assert device_figure([Sample(2, {"thread_errors": 3}), Sample(1, {"thread_errors": 3})], gate) == 0
    assert device_figure([Sample(1, {"thread_errors": 3})], gate) is None


def test_comparisons_with_control() -> None:
    ratio = MetricGate(metric="e2e_ms_p95", op="<=", threshold=1.5, compare="ratio_to_control")
    diff = MetricGate(metric="conf_mean", op=">=", threshold=-0.1, compare="difference_to_control")
    assert compared(30.0, 20.0, ratio) == 1.5
    assert compared(0.7, 0.9, diff) == pytest.approx(-0.2)
    assert compared(30.0, None, ratio) is None
    assert compared(1.0, 0.0, ratio) == math.inf
