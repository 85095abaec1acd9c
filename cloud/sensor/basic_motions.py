"""The UEA BasicMotions set (smart-watch accelerometer + gyroscope, 4 activities) from the copy inside sktime.

sktime ships the .ts files in its wheel, so the default sensor job needs no download. 80 recordings of 10 s at
10 Hz, 6 channels; the set's own TRAIN/TEST files give the held-out split.
"""

from __future__ import annotations

import numpy as np

from cloud.errors import DataError
from cloud.sensor.recordings import Recording, SensorDataset
from shared.window_recipe import SensorChannel

SAMPLE_RATE_HZ = 10.0
# The .ts header says "3D accelerometer and a 3D gyroscope" in that order; it gives no units.
CHANNELS = [
    SensorChannel(name=n, unit="as recorded")
    for n in ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
]


def _split(split: str) -> list[Recording]:
    try:
        from sktime.datasets import load_basic_motions
    except ImportError as exc:
        raise DataError(f"the BasicMotions set comes with sktime, which is not installed ({exc}): "
                        "pip install -e '.[cloud]'") from exc
    try:
        x, y = load_basic_motions(split=split, return_type="numpy3D")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read BasicMotions {split} from sktime's bundled data: {exc}") from exc
    out = []
    for i in range(x.shape[0]):
        values = np.ascontiguousarray(np.asarray(x[i], dtype=np.float64).T.astype(np.float32))
        label = str(y[i]).lower()
        out.append(Recording(f"basic_motions_{split}_{i:03d}", values, np.full(values.shape[0], label)))
    return out


def load_basic_motions() -> SensorDataset:
    """Training recordings (TRAIN file) and held-out test recordings (TEST file), in raw units."""
    return SensorDataset(
        name="BasicMotions (UEA, via sktime)",
        channels=list(CHANNELS),
        sample_rate_hz=SAMPLE_RATE_HZ,
        recordings=_split("train"),
        test=_split("test"),
    )
