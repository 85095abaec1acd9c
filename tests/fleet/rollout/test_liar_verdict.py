"""One lying device cannot move a stage's verdict: the four scenarios of issue 19 at the verdict level (figures in,
decision out), with the liar inside the cohorts (a device the control plane trusts, e.g. a compromised camera)."""

from __future__ import annotations

import pytest

from fleet.rollout.gates import Sample
from fleet.rollout.plan import MetricGate, PsiGate, RestartsGate, Stage
from fleet.rollout.verdict import Baseline, CanaryDevice, StageVerdict, judge_stage

V = 2
S = 1000
LABELS = ("0", "1", "2", "3")
LATENCY = MetricGate(metric="e2e_ms_p95", op="<=", threshold=1.5, compare="ratio_to_control")
CONF = MetricGate(metric="conf_mean", op=">=", threshold=-0.1, compare="difference_to_control")
PSI = PsiGate(kind="psi", max_psi=0.2, min_results=200)
STAGE = Stage(name="canary", percent=10, soak_s=30, window_s=60, device_deadline_s=120, deadline_s=600,
              gates=[RestartsGate(kind="restarts"), LATENCY, CONF, PSI])
NOW_S = 70
FLOOD = 4_000_000_000_000


def reports(version: int, e2e: float = 20.0, counts: dict[str, int] | None = None, fps: float | None = 10.0,
            every_s: int = 10, n: int = 6, start_s: int = 15) -> tuple[Sample, ...]:
    """A device's telemetry: one report every 10 s of fps x 10 s results spread evenly over four classes."""
    mix = counts if counts is not None else {label: 25 for label in LABELS}
    figures = {"model_version": float(version), "e2e_ms_p95": e2e, "conf_mean": 0.9}
    if fps is not None:
        figures["fps"] = fps
    return tuple(Sample((start_s + i * every_s) * S, dict(figures), dict(mix)) for i in range(n))


def canary(name: str, data: tuple[Sample, ...]) -> CanaryDevice:
    return CanaryDevice(device_id=name, assigned_ms=0, converged_ms=5 * S, reported_version=V, online=True,
                        samples=data)


def judge(canaries: list[CanaryDevice], control: dict[str, tuple[Sample, ...]],
          baseline: Baseline | None = None) -> StageVerdict:
    return judge_stage(STAGE, V, canaries, control, baseline, 0, 600 * S, NOW_S * S)


def honest_canaries(n: int = 2, e2e: float = 21.0) -> list[CanaryDevice]:
    return [canary(f"cam-{i}", reports(V, e2e=e2e)) for i in range(n)]


def honest_control(n: int = 8) -> dict[str, tuple[Sample, ...]]:
    return {f"ctl-{i}": reports(1) for i in range(n)}


def gate(v: StageVerdict, label: str) -> dict[str, object]:
    return next(g.as_dict() for g in v.gates if g.gate == label)


def test_a_good_version_passes() -> None:
    v = judge(honest_canaries(), honest_control())
    assert v.decision == "pass", v.reason
    assert v.suspects() == {}


def test_b_a_canary_flooding_class_counts_does_not_fail_a_good_version() -> None:
    liar = canary("liar", reports(V, counts={"0": FLOOD}))
    v = judge([*honest_canaries(), liar], honest_control())
    assert v.decision == "pass", v.reason
    psi = gate(v, PSI.label)
    assert psi["status"] == "pass" and float(psi["canary"]) < 0.2  # type: ignore[arg-type]
    assert "liar" in v.suspects() and "its reported fps allows at most 906" in v.suspects()["liar"][0]
    assert "suspect devices left out: liar" in v.reason


def test_b_a_control_device_flooding_class_counts_does_not_fail_a_good_version() -> None:
    control = {**honest_control(), "liar": reports(1, counts={"0": FLOOD})}
    v = judge(honest_canaries(), control)
    assert v.decision == "pass", v.reason
    assert "control: claims 2.4e+13 results" in v.suspects()["liar"][0]


@pytest.mark.parametrize(("fps", "why"), [
    (1e12, "reported fps 1e+12 is over 100x off its cohort's median 10"),
    (None, "claims 2.4e+13 results but reports no fps, so they cannot be bounded"),
])
def test_b_a_flood_with_a_lying_or_missing_frame_rate_is_still_suspect(fps: float | None, why: str) -> None:
    liar = canary("liar", reports(V, counts={"0": FLOOD}, fps=fps))
    v = judge([*honest_canaries(), liar], honest_control())
    assert v.decision == "pass", v.reason
    assert why in v.suspects()["liar"][0]


def test_b_a_plausible_flood_weighs_no_more_than_a_typical_device() -> None:
    # 900 results of one class is within what fps 10 allows in 60 s: the liar is not caught, but counts only as
    # much as the median canary (600 results), so it shifts the mix by a quarter, not by half as a sum would.
    liar = canary("liar", reports(V, counts={"0": 150}))
    v = judge([*honest_canaries(3), liar], honest_control())
    assert v.decision == "pass", v.reason
    psi = gate(v, PSI.label)
    assert "2400 canary results" in str(psi["detail"]) and v.suspects() == {}


def test_c_a_three_times_slower_version_fails_the_stage() -> None:
    v = judge(honest_canaries(e2e=60.0), honest_control())
    assert v.decision == "fail", v.reason
    assert gate(v, LATENCY.label)["status"] == "fail"
    assert "cam-0 has 3" in v.reason


@pytest.mark.parametrize("liar", [
    reports(1, e2e=1e9),  # consistently absurd: off the other control devices' median
    reports(1, e2e=20.0, n=3) + reports(1, e2e=1e9, n=3, start_s=45),  # jumps by orders of magnitude
])
def test_d_a_control_liar_reporting_huge_latency_cannot_mask_a_slow_version(liar: tuple[Sample, ...]) -> None:
    v = judge(honest_canaries(e2e=60.0), honest_control_and(liar))
    assert v.decision == "fail", v.reason
    latency = gate(v, LATENCY.label)
    assert latency["status"] == "fail" and latency["control"] == 20.0
    assert "e2e_ms_p95" in v.suspects()["liar"][0]


def honest_control_and(liar: tuple[Sample, ...]) -> dict[str, tuple[Sample, ...]]:
    return {**honest_control(), "liar": liar}


def test_d_in_a_two_device_control_the_strictest_figure_counts() -> None:
    v = judge(honest_canaries(e2e=60.0), {"ctl-0": reports(1), "liar": reports(1, e2e=1e9)})
    assert v.decision == "fail", v.reason
    assert gate(v, LATENCY.label)["control"] == 20.0


def test_a_canary_outlier_is_suspect_rather_than_failing_the_stage() -> None:
    liar = canary("liar", reports(V, e2e=1e9))
    v = judge([*honest_canaries(3), liar], honest_control())
    assert v.decision == "pass", v.reason
    assert "canary: e2e_ms_p95 1e+09 is over 100x off" in v.suspects()["liar"][0]


def test_a_baseline_is_robust_too() -> None:
    # No control device left (the last stage): the baseline stands in, built from the same robust figures.
    base = Baseline(figures={"mean:e2e_ms_p95": 20.0, "mean:conf_mean": 0.9},
                    class_counts={label: 250.0 for label in LABELS})
    assert judge(honest_canaries(), {}, base).decision == "pass"
    assert judge(honest_canaries(e2e=60.0), {}, base).decision == "fail"


def test_d_in_a_three_device_control_only_the_liar_is_suspect() -> None:
    v = judge(honest_canaries(e2e=60.0), {"ctl-0": reports(1), "ctl-1": reports(1), "liar": reports(1, e2e=1e9)})
    assert v.decision == "fail", v.reason
    assert gate(v, LATENCY.label)["control"] == 20.0
    assert list(v.suspects()) == ["liar"]
