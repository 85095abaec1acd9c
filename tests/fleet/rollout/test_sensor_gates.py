"""Sensor-aware gates on synthetic score distributions, no sockets: the score PSI over threshold-unit bins and the
alert rate decide on evidence (pass, fail, hold), a broken threshold fails both at the canary, the 100 % stage falls
back to the group's baseline bins, and the default plan picks an anomaly model's gates by its task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fleet.db.store import FleetStore
from fleet.rollout.evidence import Need, psi_compare
from fleet.rollout.gates import Sample
from fleet.rollout.plan import DEFAULT_MIN_WINDOWS, MetricGate, PsiGate, Stage, default_plan
from fleet.rollout.sensor_gates import ALERT_RATE_MARGIN, anomaly_gates, bins_of
from fleet.rollout.sensor_plan import ScorePsiGate
from fleet.rollout.task_gates import default_plan_for, gates_for
from fleet.rollout.verdict import Baseline, CanaryDevice, StageVerdict, judge_stage
from fleet.sim.sensor import SensorSim
from shared import score_bins
from tests.edge.sensor.anomaly_package import anomaly_manifest
from tests.fleet.conftest import Clock
from tests.fleet.rollout.fake_fleet import MODEL
from tests.fleet.rollout.test_controller import World

V = 2
S = 1000
WINDOWS = 30  # telemetry windows per device in the analysis window
PER_WINDOW = 20  # sensor windows scored per telemetry window
# A calibrated model's normal windows, in threshold units: mostly 0.2-0.6x, a few near it, ~0.5 % over it.
GOOD_MIX = np.array([0.10, 0.45, 0.30, 0.10, 0.045, 0.004, 0.001, 0.0, 0.0])
# The same model with its threshold at a hundredth of normal scores: every window far over it.
BROKEN_MIX = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
STAGE = Stage(name="canary", percent=50, soak_s=0, window_s=WINDOWS * 2, device_deadline_s=600, deadline_s=3600,
              gates=list(anomaly_gates().quality))


def sensor_samples(rng: np.random.Generator, mix: np.ndarray, version: int, n: int = WINDOWS,
                   per_window: int = PER_WINDOW) -> tuple[Sample, ...]:
    """A device's telemetry: each window's scores drawn into the bins, with the rate over 1x and the window count."""
    out = []
    for i in range(n):
        counts = rng.multinomial(per_window, mix / mix.sum())
        over = int(counts[5:].sum())
        figures = {"model_version": version, "fps": per_window / 2.0, "results_window": per_window,
                   "anomaly_alert_rate": 1000.0 * over / per_window,
                   **{name: float(c) for name, c in zip(score_bins.NAMES, counts, strict=True)}}
        out.append(Sample((i + 1) * 2 * S, figures))
    return tuple(out)


def canary(name: str, data: tuple[Sample, ...]) -> CanaryDevice:
    return CanaryDevice(name, 0, 1, V, True, samples=data)


def judge(canary_mix: np.ndarray, seed: int = 0, control: int = 1, n: int = WINDOWS, stage: Stage = STAGE,
          baseline: Baseline | None = None) -> StageVerdict:
    rng = np.random.default_rng(seed)
    canaries = [canary("can-0", sensor_samples(rng, canary_mix, V, n))]
    ctl = {f"ctl-{i}": sensor_samples(rng, GOOD_MIX, 1, n) for i in range(control)}
    return judge_stage(stage, V, canaries, ctl, baseline, 0, 3600 * S, (n + 1) * 2 * S)


def statuses(v: StageVerdict) -> dict[str, str]:
    return {g.gate: g.status for g in v.gates}


def test_the_same_score_distribution_passes_both_gates() -> None:
    v = judge(GOOD_MIX)
    assert v.decision == "pass", v.reason
    assert statuses(v) == {"score psi <= 0.25": "pass", f"mean anomaly_alert_rate - control <= {ALERT_RATE_MARGIN:g}":
                           "pass"}


def test_a_broken_threshold_fails_the_score_psi_and_the_alert_rate_at_the_canary() -> None:
    v = judge(BROKEN_MIX)
    assert v.decision == "fail", v.reason
    gates = {g.gate: g for g in v.gates}
    psi = gates["score psi <= 0.25"]
    assert psi.status == "fail" and psi.evidence is not None and float(psi.evidence["low"]) > 0.25  # type: ignore[arg-type]
    rate = gates[f"mean anomaly_alert_rate - control <= {ALERT_RATE_MARGIN:g}"]
    assert rate.status == "fail" and rate.canary == 1000.0
    assert [d.device_id for d in v.failed()] == ["can-0"]  # the canary goes back


def test_too_few_scored_windows_hold_rather_than_decide() -> None:
    v = judge(BROKEN_MIX, n=4)  # 80 windows per cohort, 4 telemetry windows: below both minimums
    assert v.decision == "hold" and set(statuses(v).values()) == {"hold"}, v.reason
    assert "results in window" in v.reason or "windows" in v.reason


def test_with_no_control_left_the_groups_baseline_bins_are_the_reference() -> None:
    last = Stage(**{**STAGE.model_dump(), "name": "all", "percent": 100})
    bins = {name: 1000.0 * share for name, share in zip(score_bins.NAMES, GOOD_MIX, strict=True)}
    baseline = Baseline({"mean:anomaly_alert_rate": 5.0}, score_bins=bins)
    good, broken = (judge(mix, control=0, stage=last, baseline=baseline) for mix in (GOOD_MIX, BROKEN_MIX))
    assert good.decision == "pass", good.reason
    assert broken.decision == "fail" and statuses(broken)["score psi <= 0.25"] == "fail", broken.reason
    assert "baseline" in next(g.detail for g in broken.gates if g.gate == "score psi <= 0.25")


def test_score_psi_false_failure_and_power_at_the_defaults() -> None:
    """200 seeded repetitions at the default plan's sample (12 windows of 20 scored windows per device, one canary,
    three control devices): the same distribution never fails; one whose windows sit twice as close to the
    threshold (every bin shifted up by two) fails nearly always."""
    gate = next(g for g in anomaly_gates().quality if isinstance(g, ScorePsiGate))
    shifted = np.concatenate([[0.0, 0.0], GOOD_MIX[:-2]]) + np.concatenate([np.zeros(8), [GOOD_MIX[-2:].sum()]])
    out: dict[str, dict[str, float]] = {"same": {}, "shifted": {}}
    for name, mix in (("same", GOOD_MIX), ("shifted", shifted)):
        counts = {"pass": 0.0, "fail": 0.0, "hold": 0.0}
        for rep in range(200):
            rng = np.random.default_rng(rep)
            can = {"c": [bins_of(s) for s in sensor_samples(rng, mix, V, DEFAULT_MIN_WINDOWS)]}
            ctl = {f"k{i}": [bins_of(s) for s in sensor_samples(rng, GOOD_MIX, 1, DEFAULT_MIN_WINDOWS)]
                   for i in range(3)}
            ev = psi_compare(can, ctl, max_psi=gate.max_psi, cap_canary=240, cap_control=240,  # type: ignore[arg-type]
                             confidence=gate.confidence, need=Need(1, gate.min_windows),
                             min_results=gate.min_results, resamples=300, seed=rep)
            counts[ev.status] += 1 / 200
        out[name] = counts
    assert out["same"]["fail"] == 0.0 and out["same"]["pass"] >= 0.9  # observed 0.0 and 0.99 (the rest holds)
    assert out["shifted"]["fail"] >= 0.95, out  # observed 1.0


def test_the_default_plan_carries_the_served_tasks_own_gates() -> None:
    anomaly = default_plan_for("anomaly")
    canary_gates, half = anomaly.stages[0].gates, anomaly.stages[1].gates
    assert any(isinstance(g, ScorePsiGate) for g in half)
    metrics = {g.metric for g in canary_gates if isinstance(g, MetricGate)}
    assert {"anomaly_alert_rate", "shadow_agreement", "shadow_score_diff", "e2e_ms_p95"} <= metrics
    assert not {"conf_mean", "low_conf_share"} & metrics and not any(isinstance(g, PsiGate) for g in canary_gates)
    assert "shadow_score_diff" not in {g.metric for g in half if isinstance(g, MetricGate)}  # canaries only
    # A classifier (a sensor classifier too) and a detector keep the default plan as it was.
    assert default_plan_for("classification") == default_plan() == default_plan_for("detection")
    assert gates_for("something-new") == gates_for("classification")


@pytest.fixture
def world(store: FleetStore, clock: Clock) -> World:
    return World(store, clock)


def test_a_rollout_started_without_a_plan_takes_the_gates_of_the_versions_task(world: World) -> None:
    def checked(model: str, version: int) -> Any:
        return anomaly_manifest(name=model, version=version)

    row = world.ops.start(MODEL, 2, "lab", None, check_version=checked)
    assert row.plan == default_plan_for("anomaly")
    assert "score_bins" in row.baseline
    world.ops.abort(row.id)
    row = world.ops.start(MODEL, 3, "lab", None)
    assert row.plan == default_plan()


@pytest.mark.parametrize(("behaviour", "decision"), [("broken_threshold", "fail"), ("drifting", "fail"),
                                                     ("normal", "pass")])
def test_the_simulators_sensor_devices_are_judged_by_the_sensor_gates(behaviour: str, decision: str) -> None:
    """A simulated device's new version against two control devices on the old one, 120 reports of 20 windows."""
    def reports(sim: SensorSim, version: int) -> tuple[Sample, ...]:
        out = []
        for i in range(120):
            figures, _ = sim.tick(version == V, 1.0, (i + 1) * S)
            out.append(Sample((i + 1) * S, {**figures, "model_version": version, "fps": 20.0, "results_window": 20}))
        return tuple(out)

    stage = Stage(**{**STAGE.model_dump(), "window_s": 130})
    canaries = [canary("can-0", reports(SensorSim(behaviour, "c", window_rate=20), V))]  # type: ignore[arg-type]
    ctl = {f"ctl-{i}": reports(SensorSim(behaviour, f"k{i}", window_rate=20), 1)  # type: ignore[arg-type]
           for i in range(2)}
    v = judge_stage(stage, V, canaries, ctl, None, 0, 3600 * S, 121 * S)
    assert v.decision == decision, (v.reason, statuses(v))
    failed = {g for g, status in statuses(v).items() if status == "fail"}
    if behaviour == "broken_threshold":  # its scores are the old ones; the threshold they are judged by is not
        assert failed == {"score psi <= 0.25", f"mean anomaly_alert_rate - control <= {ALERT_RATE_MARGIN:g}"}
    if behaviour == "drifting":  # scores 1.8x higher, still mostly under the threshold: the distribution moved
        assert "score psi <= 0.25" in failed
