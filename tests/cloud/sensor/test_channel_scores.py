"""The anomaly graph's features: each fault kind raises its own feature on its own channel, in units of normal data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloud.sensor.channel_scores import FEATURES, MIN_FLAT_SCALE, ChannelScores, channel_scores, fit_scales
from cloud.sensor.models import ConvAutoencoder

C, T = 3, 32


def normal_windows(n: int, seed: int = 0) -> np.ndarray:
    """Normalized windows of three moving channels: sines of random phase and frequency plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 10.0
    phase = rng.uniform(0, 2 * np.pi, (n, C, 1))
    freq = rng.uniform(0.5, 1.5, (n, C, 1))
    return (np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.1, (n, C, T))).astype(np.float32)


@pytest.fixture(scope="module")
def scorer() -> ChannelScores:
    torch.manual_seed(0)
    return channel_scores(ConvAutoencoder(C, T, 8, 4), normal_windows(400), 99.5)


def feature(scorer: ChannelScores, x: np.ndarray, name: str) -> np.ndarray:
    with torch.inference_mode():
        return scorer.features(torch.from_numpy(x)).numpy()[:, FEATURES.index(name)]


@pytest.mark.parametrize(("fault", "name"), [("stuck", "flat"), ("dropout", "flat"), ("level", "level"),
                                             ("spike", "spike")])
def test_each_fault_raises_its_feature_above_normal_on_the_faulty_channel(
    scorer: ChannelScores, fault: str, name: str
) -> None:
    clean = normal_windows(50, seed=1)
    faulty = clean.copy()
    if fault == "stuck":
        faulty[:, 1, T // 4 :] = faulty[:, 1, T // 4 : T // 4 + 1]
    elif fault == "dropout":
        faulty[:, 1, T // 4 :] = -1.7
    elif fault == "level":
        faulty[:, 1, :] += 4.0
    else:
        faulty[:, 1, T // 2] += 6.0
    assert np.all(feature(scorer, faulty, name)[:, 1] > 2.0 * feature(scorer, clean, name)[:, 1].max())
    with torch.inference_mode():
        scores = scorer(torch.from_numpy(faulty)).numpy()
    assert np.all(scores.argmax(axis=1) == 1) and np.all(scores.max(axis=1) > 1.0)


def test_one_repeated_reading_is_not_a_stuck_sensor(scorer: ChannelScores) -> None:
    window = normal_windows(1, seed=2)
    window[0, 0, 10] = window[0, 0, 9]
    assert feature(scorer, window, "flat")[0, 0] < 1.0


def test_a_feature_never_seen_in_training_is_scaled_by_its_floor_not_by_zero() -> None:
    scales = fit_scales(ConvAutoencoder(C, T, 8, 4), normal_windows(100), 99.5).numpy()
    assert scales.shape == (len(FEATURES), C) and np.all(np.isfinite(scales)) and np.all(scales > 0)
    assert np.all(scales[FEATURES.index("flat")] == np.float32(MIN_FLAT_SCALE))
    with pytest.raises(ValueError, match="normal windows"):
        fit_scales(ConvAutoencoder(C, T, 8, 4), np.zeros((0, C, T), np.float32), 99.5)
