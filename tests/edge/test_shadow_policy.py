"""The shadow check on a canary: on when the fleet's desired state marks the device a canary and the previous
version's run time measured here is within sync.shadow_canary_budget_ms; off for a model over the budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import SyncConfig
from edge.hot_swap import ServingModel, prepare
from edge.shadow import ShadowCheck
from edge.shadow_policy import ShadowPolicy
from edge.supervise import Health
from shared.manifest import Manifest
from tests.edge.fake_model import FakeModel
from tests.edge.test_shadow import result
from tests.edge.tiny_onnx import manifest_for, write_classifier


class SlowModel(FakeModel):
    """Predicts like FakeModel but takes at least `delay_s` per run, like a big model on a small device."""

    def __init__(self, favour: int, delay_s: float) -> None:
        super().__init__(favour)
        self.delay_s = delay_s

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().run(batch)


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return manifest_for(write_classifier(tmp_path / "m.onnx"))


def _sync(**over: object) -> SyncConfig:
    return SyncConfig.model_validate({"model": "digits", **over})


def _check(policy: ShadowPolicy, model: FakeModel, manifest: Manifest) -> ShadowCheck:
    shadow_model: ServingModel = prepare(model, manifest, manifest.variants[0], warm_up=False)
    check = ShadowCheck(policy.every, lambda served: shadow_model, Health(), budget_ms=policy.budget_ms)
    check.update(2)
    return check


def test_a_canary_without_shadow_every_runs_the_check_by_default() -> None:
    policy = ShadowPolicy(lambda: _sync(), lambda: True)
    assert policy.every() == 2 and policy.budget_ms() == 10.0
    assert ShadowPolicy(lambda: _sync(), lambda: False).every() is None  # not a canary: off, as before


def test_configured_shadow_every_runs_without_a_budget_and_a_null_budget_turns_the_canary_rule_off() -> None:
    assert ShadowPolicy(lambda: _sync(shadow_every=5), lambda: False).every() == 5
    assert ShadowPolicy(lambda: _sync(shadow_every=5), lambda: True).budget_ms() is None
    assert ShadowPolicy(lambda: _sync(shadow_canary_budget_ms=None), lambda: True).every() is None


def test_a_canary_reports_agreement_when_the_previous_version_is_cheap(manifest: Manifest) -> None:
    check = _check(ShadowPolicy(lambda: _sync(), lambda: True), FakeModel(3), manifest)
    assert check.wants(0) and check.shadow_version is not None
    for i, label in enumerate(["3", "3", "7"]):
        check.compare(result(i, label, 2))
    assert check.metrics() == {"shadow_frames": 3.0, "shadow_agreement": pytest.approx(2 / 3)}
    assert check.cost_ms is not None


def test_a_previous_version_over_the_budget_is_not_run_as_the_shadow(manifest: Manifest) -> None:
    slow = SlowModel(3, delay_s=0.02)  # 20 ms per frame against a 1 ms budget
    check = _check(ShadowPolicy(lambda: _sync(shadow_canary_budget_ms=1.0), lambda: True), slow, manifest)
    for i in range(4):
        check.compare(result(i, "3", 2))
    assert check.cost_ms is not None and check.cost_ms > 1.0
    assert check.shadow_version is None and slow.closed.is_set()
    assert check.metrics() == {}  # no agreement reported: the gate does not count this device
    assert slow.runs == 3  # the probe's three runs, nothing after


def test_the_same_slow_model_runs_when_the_operator_turned_the_check_on(manifest: Manifest) -> None:
    slow = SlowModel(3, delay_s=0.02)
    check = _check(ShadowPolicy(lambda: _sync(shadow_every=1, shadow_canary_budget_ms=1.0), lambda: False), slow,
                   manifest)
    check.compare(result(0, "3", 2))
    assert check.metrics() == {"shadow_frames": 1.0, "shadow_agreement": 1.0}
