"""The fault generator is seeded and each kind does what its name says, on one channel, from its onset."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.sensor.faults import FAULT_KINDS, faulty_copies, inject

STD = np.array([2.0, 0.5, 1.0])


def series() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    recs = [series(), series() * 2]
    a = faulty_copies(recs, FAULT_KINDS, seed=11, channel_std=STD)
    b = faulty_copies(recs, FAULT_KINDS, seed=11, channel_std=STD)
    c = faulty_copies(recs, FAULT_KINDS, seed=12, channel_std=STD)
    assert len(a) == 2 * len(FAULT_KINDS)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and x[2] == y[2]
    assert any(x[2] != z[2] for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_alters_one_channel_after_its_onset_and_masks_exactly_that(kind: str) -> None:
    clean = series()
    faulty, mask, fault = inject(clean, kind, np.random.default_rng(5), STD)  # type: ignore[arg-type]
    others = [c for c in range(3) if c != fault.channel]
    assert np.array_equal(faulty[:, others], clean[:, others])
    assert np.array_equal(faulty[: fault.onset], clean[: fault.onset])
    changed = faulty[:, fault.channel] != clean[:, fault.channel]
    assert np.array_equal(changed, mask)
    assert 50 <= fault.onset < 100 and mask.any()


def test_the_kinds_have_their_shapes() -> None:
    clean = series()
    rng = lambda: np.random.default_rng(9)  # noqa: E731 - the same draws for every kind
    cases = {k: inject(clean, k, rng(), STD) for k in FAULT_KINDS}
    f, _, d = cases["drift"]
    delta = f[:, d.channel].astype(np.float64) - clean[:, d.channel]
    assert abs(delta[-1]) == pytest.approx(4.0 * STD[d.channel], rel=1e-4) and abs(delta[d.onset]) < 1e-6
    f, m, d = cases["level_shift"]
    assert np.allclose(np.abs(f[m, d.channel] - clean[m, d.channel]), 3.0 * STD[d.channel], rtol=1e-4)
    f, m, d = cases["spikes"]
    assert m.sum() == 3 and np.allclose(np.abs(f[m, d.channel] - clean[m, d.channel]), 6.0 * STD[d.channel], rtol=1e-4)
    f, _, d = cases["stuck"]
    assert np.all(f[d.onset :, d.channel] == clean[d.onset, d.channel])
    f, _, d = cases["dropout"]
    assert np.all(f[d.onset :, d.channel] == 0.0)
