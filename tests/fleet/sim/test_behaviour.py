"""Behaviour mixes: parsed with one-line errors, assigned in exact counts, shaping only new versions' figures."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fleet.errors import SimulatorError
from fleet.sim.behaviour import BASE_E2E_MS, assign, parse_mix, window


def test_mix_fills_the_rest_with_good_and_assigns_exact_counts() -> None:
    mix = parse_mix("slow=0.1, unconfident=0.25")
    assert mix == pytest.approx({"slow": 0.1, "unconfident": 0.25, "good": 0.65})
    kinds = assign(mix, 40)
    assert Counter(kinds) == {"slow": 4, "unconfident": 10, "good": 26}
    assert assign(mix, 40) == kinds  # deterministic


@pytest.mark.parametrize(("text", "match"), [
    ("fast=0.5", "NAME=SHARE"), ("slow", "NAME=SHARE"), ("slow=x", "not a number"), ("slow=2", "between 0 and 1"),
    ("slow=0.6,offline=0.6", "above 1"),
])
def test_bad_mixes_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(SimulatorError, match=match):
        parse_mix(text)


def test_behaviours_change_figures_only_on_a_new_version() -> None:
    labels = [str(i) for i in range(10)]
    rng = random.Random(1)
    for kind in ("slow", "unconfident", "drifting"):
        old = window(kind, False, 500, labels, rng)  # type: ignore[arg-type]
        assert old.e2e_ms_p95 < BASE_E2E_MS * 1.2 and old.conf_mean > 0.85 and max(old.class_counts.values()) < 80
    slow = window("slow", True, 500, labels, rng)
    assert slow.e2e_ms_p95 > BASE_E2E_MS * 2.5
    unsure = window("unconfident", True, 500, labels, rng)
    assert unsure.conf_mean < 0.6 and unsure.low_conf_share > 0.35
    drift = window("drifting", True, 500, labels, rng)
    assert max(drift.class_counts.values()) > 150 and sum(drift.class_counts.values()) == 500


def test_liars_lie_on_every_version() -> None:
    labels = ["0", "1", "2", "3"]
    rng = random.Random(1)
    for new in (False, True):
        flood = window("liar_flood", new, 5, labels, rng)
        assert flood.class_counts == {"0": 4_000_000_000_000} and flood.e2e_ms_p95 < BASE_E2E_MS * 1.2
        mask = window("liar_mask", new, 5, labels, rng)
        assert mask.e2e_ms_p95 == 5e7 and sum(mask.class_counts.values()) == 5


def test_a_permuted_version_shifts_a_skewed_scene_by_one_label_and_keeps_its_confidence() -> None:
    labels = ["0", "1", "2", "3"]
    old = window("permuted", False, 4000, labels, random.Random(2))
    new = window("permuted", True, 4000, labels, random.Random(2))  # same scene, same draws
    assert old.class_counts["0"] > 1.5 * old.class_counts["3"]  # the scene is skewed toward class 0
    assert new.class_counts == {labels[(labels.index(k) + 1) % 4]: n for k, n in old.class_counts.items()}
    assert new.conf_mean == old.conf_mean and new.low_conf_share == old.low_conf_share


def test_noisy_latency_on_every_version_and_slower_within_the_default_margin() -> None:
    labels = ["0", "1"]
    rng = random.Random(3)
    noisy = [window("noisy", new, 5, labels, rng).e2e_ms_p95 for new in (False, True) for _ in range(200)]
    assert max(noisy) > 2 * BASE_E2E_MS and min(noisy) < 0.7 * BASE_E2E_MS  # spread like a loaded machine
    slower = [window("slower", True, 5, labels, rng).e2e_ms_p95 for _ in range(50)]
    assert all(BASE_E2E_MS * 1.1 < e < BASE_E2E_MS * 1.4 for e in slower)
    assert window("slower", False, 5, labels, rng).e2e_ms_p95 < BASE_E2E_MS * 1.1
