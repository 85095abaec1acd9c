"""Rollout verdicts are pure: the same telemetry always gives the same pass / wait / fail."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.rollout import Gate, RolloutPlan, Stage, devices_for_stage, judge_stage

P99 = Gate(metric="e2e_ms_p99", op="<=", threshold=50, aggregate="max", min_samples=2)
STAGE = Stage(name="canary", percent=10, soak_s=60, gates=[P99])


def test_pass_after_soak_with_good_telemetry() -> None:
    samples = {"a": [{"e2e_ms_p99": 20}, {"e2e_ms_p99": 30}]}
    assert judge_stage(STAGE, samples, ["a"], elapsed_s=61).status == "pass"


def test_wait_while_soaking_or_short_of_samples() -> None:
    samples = {"a": [{"e2e_ms_p99": 20}, {"e2e_ms_p99": 30}]}
    assert judge_stage(STAGE, samples, ["a"], elapsed_s=10).status == "wait"
    v = judge_stage(STAGE, {"a": [{"e2e_ms_p99": 20}]}, ["a"], elapsed_s=100)
    assert v.status == "wait" and "1/2 samples" in v.reasons[0]


def test_fail_names_device_and_figure() -> None:
    samples = {"a": [{"e2e_ms_p99": 20}, {"e2e_ms_p99": 80}], "b": [{"e2e_ms_p99": 1}, {"e2e_ms_p99": 1}]}
    v = judge_stage(STAGE, samples, ["a", "b"], elapsed_s=5)
    assert v.status == "fail" and v.reasons == ["a: max e2e_ms_p99 = 80, needs <= 50"]


def test_failure_budget() -> None:
    lenient = STAGE.model_copy(update={"max_failed_devices": 1})
    samples = {"a": [{"e2e_ms_p99": 99}] * 2, "b": [{"e2e_ms_p99": 1}] * 2}
    assert judge_stage(lenient, samples, ["a", "b"], elapsed_s=100).status == "pass"


def test_device_selection_is_stable_and_grows() -> None:
    fleet = [f"cam-{i:02d}" for i in range(40)]
    ten = devices_for_stage(fleet, 10, "digits:7")
    fifty = devices_for_stage(fleet, 50, "digits:7")
    assert len(ten) == 4 and len(fifty) == 20 and set(ten) <= set(fifty)
    assert devices_for_stage(fleet, 10, "digits:7") == ten


def test_plan_validation() -> None:
    with pytest.raises(ValidationError, match="not declared"):
        Gate(metric="nope", op="<=", threshold=1)
    with pytest.raises(ValidationError, match="decrease"):
        RolloutPlan(fleet="f", model="m", version=1, stages=[STAGE, STAGE.model_copy(update={"percent": 5})])
