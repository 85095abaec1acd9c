"""The anomaly threshold is the configured percentile of held-out normal scores; the gate figures are right."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.errors import ExportError
from cloud.sensor.calibration import calibrate_threshold, over_threshold
from cloud.sensor.scoring import auroc, false_alarm_rate, macro_f1


@pytest.mark.parametrize(("percentile", "over"), [(99.5, 5), (99.0, 10), (90.0, 100), (50.0, 500)])
def test_the_configured_percentile_leaves_that_share_of_normal_windows_above(percentile: float, over: int) -> None:
    scores = np.random.default_rng(0).permutation(np.arange(1000, dtype=np.float64))
    threshold = calibrate_threshold(scores, percentile)
    assert int(over_threshold(scores, threshold).sum()) == over
    assert false_alarm_rate(scores, threshold) == pytest.approx(over / 1000)


@pytest.mark.parametrize("scores", [np.array([]), np.array([1.0, np.nan])])
def test_calibration_refuses_no_or_broken_scores(scores: np.ndarray) -> None:
    with pytest.raises(ExportError):
        calibrate_threshold(scores, 99.5)


def test_auroc_ranks_anomalies_above_normal_windows() -> None:
    y = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert auroc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), y) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), y) == 0.0
    assert auroc(np.ones(5), y) == 0.5
    assert auroc(np.array([0.1, 0.5, 0.3, 0.4, 0.9]), y) == pytest.approx(5 / 6)


def test_macro_f1_weighs_classes_alike() -> None:
    assert macro_f1(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), 2) == 1.0
    assert macro_f1(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]), 2) == pytest.approx((6 / 7) / 2)
