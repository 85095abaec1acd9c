"""The default job's data ships inside sktime: BasicMotions loads offline, split as the set defines it."""

from __future__ import annotations

import numpy as np

from cloud.sensor.basic_motions import SAMPLE_RATE_HZ, load_basic_motions


def test_basic_motions_loads_from_the_installed_package() -> None:
    data = load_basic_motions()
    assert len(data.recordings) == 40 and len(data.test) == 40
    assert [c.name for c in data.channels] == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    assert data.classes == ["badminton", "running", "standing", "walking"] and SAMPLE_RATE_HZ == 10.0
    first = data.recordings[0]
    assert first.values.shape == (100, 6) and first.values.dtype == np.float32 and first.labels is not None
