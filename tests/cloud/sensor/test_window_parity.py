"""One CSV recording gives the trainer and the device's CSV source the same model inputs, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud.sensor.config import SensorDataConfig
from cloud.sensor.csv_loader import load_csv_dir
from cloud.sensor.splits import fit_recipe
from edge.sources.sensor_csv import SensorCsvSource
from shared.windowing import normalize_window, windows_of


def test_trainer_and_device_cut_and_normalize_a_recording_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    readings = rng.normal(size=(120, 3)) * [0.9, 250.0, 0.013] + [0.2, 1013.25, -0.004]
    lines = [",".join(f"{v:.7g}" for v in row) for row in readings]
    (tmp_path / "rec.csv").write_text("accel,pressure,tilt\n" + "\n".join(lines) + "\n")
    cfg = SensorDataConfig.model_validate({"source": "csv", "dir": tmp_path, "window": 16, "hop": 6,
                                           "sample_rate_hz": 25})
    data = load_csv_dir(cfg, need_labels=False)
    recipe = fit_recipe(data, data.recordings, cfg)
    trainer = windows_of(data.recordings[0].values, recipe)

    # The device reads the same file without a header row (it skips the header as text, counted).
    (tmp_path / "device.csv").write_text("\n".join(lines) + "\n")
    source = SensorCsvSource(tmp_path / "device.csv", window=recipe.window, stride=recipe.hop)
    source.open()
    device = []
    while (frame := source.read()) is not None:
        device.append(normalize_window(frame.image, recipe))
    source.close()

    assert len(device) == len(trainer) == (120 - 16) // 6 + 1
    assert np.array_equal(np.stack(device), trainer)
