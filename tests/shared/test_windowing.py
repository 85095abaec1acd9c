"""The window recipe is implemented once: a stream pushed reading by reading gives the trainer's windows exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from shared.window_recipe import SensorChannel, WindowRecipe
from shared.windowing import RowWindow, normalize_window, row_window, window_starts, windows_of


def recipe(channels: int = 3, window: int = 8, hop: int = 3) -> WindowRecipe:
    return WindowRecipe(
        sample_rate_hz=50.0, window=window, hop=hop,
        channels=[SensorChannel(name=f"ch{i}", unit="g") for i in range(channels)],
        mean=[0.5 * i - 0.25 for i in range(channels)], std=[0.3 + i for i in range(channels)],
    )


def test_streamed_windows_equal_the_trainers_windows_bit_for_bit() -> None:
    r = recipe()
    series = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * 7.3 + 1.1
    stream = row_window(r)
    device = [normalize_window(w, r) for row in series if (w := stream.push(row)) is not None]
    trainer = windows_of(series, r)
    assert len(device) == len(trainer) == len(window_starts(50, 8, 3)) == 15
    assert np.array_equal(np.stack(device), trainer)
    assert trainer.dtype == np.float32 and trainer.shape == (15, 3, 8)


def test_normalized_window_is_channels_by_time_centred_and_scaled() -> None:
    r = recipe()
    raw = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    out = normalize_window(raw, r)
    expected = ((raw.astype(np.float64) - np.array(r.mean)) / np.array(r.std)).T
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_a_window_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="8 readings of 3 channels"):
        normalize_window(np.zeros((8, 4), dtype=np.float32), recipe())


def test_a_recording_shorter_than_a_window_has_no_windows() -> None:
    assert windows_of(np.zeros((7, 3)), recipe()).shape == (0, 3, 8)


@pytest.mark.parametrize(
    ("change", "wanted"),
    [({"mean": [0.0]}, "one value per channel"), ({"std": [1.0, 0.0, 1.0]}, "positive"),
     ({"channels": [{"name": "a"}, {"name": "a"}, {"name": "b"}]}, "unique"),
     ({"channels": [{"name": "a/b"}, {"name": "c"}, {"name": "d"}]}, "invalid channel name")],
)
def test_a_recipe_that_cannot_be_applied_is_refused(change: dict[str, object], wanted: str) -> None:
    with pytest.raises(ValidationError, match=wanted):
        WindowRecipe.model_validate({**recipe().model_dump(), **change})


def test_the_edge_sources_window_with_the_shared_implementation() -> None:
    from edge.sources import windowing

    assert windowing.RowWindow is RowWindow


def test_windows_per_hour_follow_the_hop() -> None:
    assert recipe(hop=25).windows_per_hour == pytest.approx(7200.0)
