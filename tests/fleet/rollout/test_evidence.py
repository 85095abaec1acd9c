"""Gate statistics on synthetic distributions: how often a gate fails a version that is no worse (false failure),
fails one twice the margin worse (power) and passes a good one, at the default plan's margins and sample.

The default sample is the canary stage of the default plan on a four-device group after its 300 s soak at the
agent's 5 s telemetry: one canary device and three control devices, 60 windows each. Latency per window is
lognormal (sigma 0.3, as a loaded 2-core machine shows) with 5 % of windows spiking 3x, and each device has its own
level (sigma 0.1). Rates are estimated over 200 seeded repetitions, so each bound has room for sampling error
(binomial sd at 0.9 is 0.02): the method's observed rates are in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleet.rollout import evidence
from fleet.rollout.evidence import Need, compare, psi_compare
from fleet.rollout.plan import DEFAULT_MIN_WINDOWS, MetricGate, PsiGate, default_plan

REPS = 200
WINDOWS = 60
CANARY, CONTROL = 1, 3


def gate_of(metric: str) -> MetricGate:
    return next(g for g in default_plan().stages[0].gates if isinstance(g, MetricGate) and g.metric == metric)


def latency(rng: np.random.Generator, factor: float, n: int = WINDOWS) -> list[float]:
    level = 20.0 * factor * math.exp(rng.normal(0, 0.1))
    w = level * np.exp(rng.normal(0, 0.3, n))
    return list(np.where(rng.random(n) < 0.05, w * 3, w))


def confidence(rng: np.random.Generator, shift: float, n: int = WINDOWS) -> list[float]:
    return list(np.clip(0.9 + shift + rng.normal(0, 0.01) + rng.normal(0, 0.03, n), 0, 1))


def rates(draw: object, gate: MetricGate, effect: float) -> dict[str, float]:
    """Share of pass/fail/hold over REPS seeded repetitions of canary vs control at the default sample."""
    out = {"pass": 0.0, "fail": 0.0, "hold": 0.0}
    worse: evidence.Worse = "higher" if gate.op == "<=" else "lower"
    scale: evidence.Scale = "ratio" if gate.compare == "ratio_to_control" else "difference"
    for rep in range(REPS):
        rng = np.random.default_rng(rep)
        can = {f"c{i}": draw(rng, effect) for i in range(CANARY)}  # type: ignore[operator]
        ctl = {f"k{i}": draw(rng, 1.0 if scale == "ratio" else 0.0) for i in range(CONTROL)}  # type: ignore[operator]
        ev = compare(can, ctl, scale=scale, worse=worse, margin=gate.threshold, confidence=gate.confidence,
                     need=Need(gate.min_devices, gate.min_windows), seed=rep)
        out[ev.status] += 1 / REPS
    return out


def test_latency_gate_false_failure_power_and_pass_rate_at_the_defaults() -> None:
    gate = gate_of("e2e_ms_p95")  # ratio to control <= 1.5: the margin is a 50 % slowdown
    same = rates(latency, gate, 1.0)
    assert same["fail"] <= 0.02  # observed 0.0
    assert same["pass"] >= 0.9  # observed 0.955; the rest holds for more windows, never fails
    double = rates(latency, gate, 1 + 2 * (gate.threshold - 1))  # twice the margin: 2x slower
    assert double["fail"] >= 0.8  # observed 0.865
    assert double["pass"] == 0.0


def test_confidence_gate_false_failure_and_power_at_the_defaults() -> None:
    gate = gate_of("conf_mean")  # difference to control >= -0.1
    same = rates(confidence, gate, 0.0)
    assert same["fail"] <= 0.02  # observed 0.0
    assert same["pass"] >= 0.9  # observed 1.0
    assert rates(confidence, gate, 2 * gate.threshold)["fail"] >= 0.8  # observed 1.0


def mixes(rng: np.random.Generator, shares: list[float], n: int = WINDOWS,
          per_window: int = 25) -> list[dict[str, float]]:
    return [{str(k): float(c) for k, c in enumerate(rng.multinomial(per_window, shares))} for _ in range(n)]


def test_class_mix_gate_false_failure_and_power_at_the_defaults() -> None:
    gate = next(g for g in default_plan().stages[0].gates if isinstance(g, PsiGate))
    balanced = [0.1] * 10
    shifted = [0.22, 0.18, 0.04, 0.04, 0.04, 0.04, 0.18, 0.08, 0.08, 0.1]
    true_psi = sum((a - e) * math.log(a / e) for a, e in zip(shifted, balanced, strict=True))
    assert 2 * gate.max_psi <= true_psi < 2.5 * gate.max_psi  # twice the margin: 0.417
    outcomes = {"same": {"pass": 0, "fail": 0, "hold": 0}, "shifted": {"pass": 0, "fail": 0, "hold": 0}}
    for rep in range(REPS):
        rng = np.random.default_rng(rep)
        ctl = {f"k{i}": mixes(rng, balanced) for i in range(CONTROL)}
        for name, shares in (("same", balanced), ("shifted", shifted)):
            ev = psi_compare({"c0": mixes(rng, shares)}, ctl, max_psi=gate.max_psi, cap_canary=1500,
                             cap_control=1500, confidence=gate.confidence, need=Need(1, gate.min_windows),
                             min_results=gate.min_results, seed=rep)
            outcomes[name][ev.status] += 1
    assert outcomes["same"]["fail"] / REPS <= 0.02  # observed 0.0
    assert outcomes["same"]["pass"] / REPS >= 0.9  # observed 1.0
    assert outcomes["shifted"]["fail"] / REPS >= 0.8  # observed 1.0
    assert outcomes["shifted"]["pass"] == 0


def test_one_device_in_one_window_never_decides() -> None:
    gate = gate_of("e2e_ms_p95")
    args = dict(scale="ratio", worse="higher", margin=gate.threshold, need=Need(1, gate.min_windows))
    for canary in ([2000.0], [20.0]):  # 100x slower or equal: one window is too little either way
        ev = compare({"c": canary}, {"k": [20.0] * 60}, **args)  # type: ignore[arg-type]
        assert ev.status == "hold" and f"needs 1 and {DEFAULT_MIN_WINDOWS}" in ev.detail


def test_a_verdict_is_reproducible_and_its_bounds_bracket_the_estimate() -> None:
    rng = np.random.default_rng(7)
    can, ctl = {"c": latency(rng, 1.2)}, {f"k{i}": latency(rng, 1.0) for i in range(3)}
    a = compare(can, ctl, scale="ratio", worse="higher", margin=1.5, seed=3)
    b = compare(can, ctl, scale="ratio", worse="higher", margin=1.5, seed=3)
    assert a == b
    assert a.low is not None and a.high is not None and a.estimate is not None
    assert a.low <= a.estimate <= a.high


@pytest.mark.parametrize("factor, status", [(1.0, "pass"), (1.3, "pass"), (2.5, "fail")])
def test_a_slower_version_fails_on_latency_only_beyond_the_margin(factor: float, status: str) -> None:
    rng = np.random.default_rng(11)
    can = {"c": latency(rng, factor)}
    ctl = {f"k{i}": latency(rng, 1.0) for i in range(3)}
    ev = compare(can, ctl, scale="ratio", worse="higher", margin=1.5, need=Need(1, DEFAULT_MIN_WINDOWS))
    assert ev.status == status, ev.detail


def test_a_large_stage_approximates_the_bootstrap_with_the_same_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the exact budget each device's mean (or class counts) is drawn from its approximation: the bounds stay
    close to the exact bootstrap's and the verdicts the same."""
    rng = np.random.default_rng(5)
    can = {f"c{i}": latency(rng, 1.3) for i in range(20)}
    ctl = {f"k{i}": latency(rng, 1.0) for i in range(20)}
    exact = compare(can, ctl, scale="ratio", worse="higher", margin=1.5)
    mix_c = {f"c{i}": mixes(rng, [0.5, 0.3, 0.2]) for i in range(20)}
    mix_k = {f"k{i}": mixes(rng, [0.4, 0.3, 0.3]) for i in range(20)}
    psi_exact = psi_compare(mix_c, mix_k, max_psi=0.2, cap_canary=1500, cap_control=1500)
    monkeypatch.setattr(evidence, "EXACT_BUDGET", 0)
    approx = compare(can, ctl, scale="ratio", worse="higher", margin=1.5)
    psi_approx = psi_compare(mix_c, mix_k, max_psi=0.2, cap_canary=1500, cap_control=1500)
    assert (exact.status, psi_exact.status) == (approx.status, psi_approx.status) == ("pass", "pass")
    assert exact.low is not None and approx.low is not None and abs(exact.low - approx.low) < 0.05
    assert psi_exact.high is not None and psi_approx.high is not None and abs(psi_exact.high - psi_approx.high) < 0.02
