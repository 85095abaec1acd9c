"""Stage verdicts: pass, hold, fail or deadline, from the canary devices, the control cohort and the clock.

Pure: the same inputs always give the same verdict. Too little data holds a stage (never passes or fails it); a
device that does not report the new version within its deadline fails for this rollout without holding the others.
Failures count against the stage's budget, except devices that were offline (they say nothing about the version).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fleet.rollout import evidence
from fleet.rollout.gates import (
    GateResult,
    GateStatus,
    Sample,
    compared,
    device_figure,
    holds,
    readings,
    worst,
)
from fleet.rollout.plan import MetricGate, PsiGate, RestartsGate, Stage
from fleet.rollout.robust import (
    canary_suspects,
    claimed_results,
    cohort_mix,
    contribution_cap,
    control_figure,
    fps_of,
    result_suspects,
)
from fleet.rollout.sensor_gates import score_bin_samples
from fleet.rollout.sensor_plan import ScorePsiGate

Decision = Literal["pass", "hold", "fail", "deadline"]
DeviceState = Literal["pending", "updated", "failed"]
# Why a device failed; every kind but "offline" and "silent" counts against the stage's failure budget.
FailKind = Literal["rejected", "timeout", "offline", "reverted", "gate", "silent"]
NOT_COUNTED: frozenset[str] = frozenset({"offline", "silent"})


@dataclass(frozen=True)
class CanaryDevice:
    """What the controller knows of one device it gave the new version to."""

    device_id: str
    assigned_ms: int
    converged_ms: int | None
    reported_version: int | None
    online: bool
    restarts: int = 0
    samples: tuple[Sample, ...] = ()
    failed_kind: FailKind | None = None
    failed_reason: str = ""


@dataclass(frozen=True)
class DeviceOutcome:
    """A canary device's state after judging: pending, updated or failed (with kind and reason)."""

    device_id: str
    state: DeviceState
    kind: FailKind | None = None
    reason: str = ""

    @property
    def counts(self) -> bool:
        """Whether this failure counts against the stage's budget."""
        return self.state == "failed" and self.kind not in NOT_COUNTED


@dataclass(frozen=True)
class Baseline:
    """The group's figures before the rollout started: the control when no device is left on the old version."""

    figures: Mapping[str, float] = field(default_factory=dict)
    # The group's class mix as result counts (each device's contribution capped): shares and evidence in one.
    class_counts: Mapping[str, float] = field(default_factory=dict)
    # An anomaly model's windows per score bin, capped the same way (the score PSI's reference).
    score_bins: Mapping[str, float] = field(default_factory=dict)

    @staticmethod
    def key(gate: MetricGate) -> str:
        """Where a metric gate's baseline figure is kept."""
        return f"{gate.aggregate}:{gate.metric}"


@dataclass(frozen=True)
class StageVerdict:
    """The decision, why, each gate's figures and each canary device's outcome."""

    decision: Decision
    reason: str
    gates: tuple[GateResult, ...] = ()
    devices: tuple[DeviceOutcome, ...] = ()

    def failed(self) -> list[DeviceOutcome]:
        """Devices that failed, in id order."""
        return [d for d in self.devices if d.state == "failed"]

    def suspects(self) -> dict[str, list[str]]:
        """Devices whose figures some gate left out, with each reason."""
        out: dict[str, list[str]] = {}
        for g in self.gates:
            for device, why in g.suspects.items():
                out.setdefault(device, []).append(f"{g.gate}: {why}")
        return dict(sorted(out.items()))


def _rejects_since(device: CanaryDevice) -> float:
    """Package rejections since assignment, from the last reading before it (when there is one)."""
    before = readings([s for s in device.samples if s.ts_ms < device.assigned_ms], "package_rejects")[-1:]
    after = readings([s for s in device.samples if s.ts_ms >= device.assigned_ms], "package_rejects")
    return sum(max(0.0, b - a) for a, b in itertools.pairwise(before + after))


def device_progress(device: CanaryDevice, target: int, stage: Stage, now_ms: int) -> DeviceOutcome:
    """Pending, updated, or failed: rejected the package, reverted, or missed its deadline (offline or not)."""
    d = device.device_id
    if device.failed_kind is not None:
        return DeviceOutcome(d, "failed", device.failed_kind, device.failed_reason)
    if device.reported_version == target:
        return DeviceOutcome(d, "updated")
    if device.converged_ms is not None and device.online and device.reported_version is not None:
        return DeviceOutcome(d, "failed", "reverted", f"reported version {target}, now reports "
                             f"{device.reported_version}")
    if device.converged_ms is not None:
        return DeviceOutcome(d, "updated")  # ran the version and went quiet: its data deadline decides
    if _rejects_since(device) > 0:
        return DeviceOutcome(d, "failed", "rejected", f"refused the package of version {target} (package_rejects "
                             "rose)")
    waited_s = (now_ms - device.assigned_ms) / 1000
    if waited_s >= stage.device_deadline_s:
        if not device.online:
            return DeviceOutcome(d, "failed", "offline", f"offline; did not report version {target} within "
                                 f"{stage.device_deadline_s:g} s")
        return DeviceOutcome(d, "failed", "timeout", f"did not report version {target} within "
                             f"{stage.device_deadline_s:g} s (reports {device.reported_version})")
    return DeviceOutcome(d, "pending", reason=f"waiting for version {target} ({waited_s:.0f}/"
                         f"{stage.device_deadline_s:g} s)")


def window_samples(device: CanaryDevice, target: int, stage: Stage, now_ms: int) -> list[Sample]:
    """A canary's samples in the analysis window, after it converged, from the new version only."""
    start = max(device.converged_ms or device.assigned_ms, now_ms - int(stage.window_s * 1000))
    return [
        s for s in device.samples
        if start <= s.ts_ms <= now_ms and s.figures.get("model_version", target) == target
    ]


@dataclass
class _GateJudgement:
    result: GateResult
    device_failures: dict[str, str] = field(default_factory=dict)
    silent: dict[str, str] = field(default_factory=dict)
    cohort_fail: bool = False


def _frames(samples_by_device: Mapping[str, Sequence[Sample]]) -> float:
    """Results a cohort counted in its windows (results_window summed)."""
    return sum(sum(readings(s, "results_window")) for s in samples_by_device.values())


def _scale(gate: MetricGate) -> evidence.Scale:
    return {"absolute": "absolute", "ratio_to_control": "ratio", "difference_to_control": "difference"}[
        gate.compare]  # type: ignore[return-value]


def _combined(gate: MetricGate, windows: Mapping[str, Sequence[float]],
              ref: Mapping[str, Sequence[float]] | float | None, need: evidence.Need,
              args: Mapping[str, Any]) -> evidence.Evidence:
    """The gate's comparison; a ratio gate with `min_difference` fails only when the canary is also worse by more
    than it (both with confidence), and passes when either says it is not."""
    ev = evidence.compare(windows, ref, need=need, **args)
    if not gate.min_difference or gate.compare != "ratio_to_control" or ev.estimate is None:
        return ev
    diff = evidence.compare(windows, ref, need=need, **{**args, "scale": "difference", "margin": gate.min_difference})
    if ev.status == "fail" and diff.status != "fail":
        status: evidence.Status = diff.status
    elif ev.status == "hold" and diff.status == "pass":
        status = "pass"
    else:
        return ev
    why = {"pass": "within", "hold": "not yet clear of"}[status]
    return dataclasses.replace(ev, status=status, detail=f"{ev.detail}; the difference {diff.estimate:.4g} "
                               f"[{diff.low:.4g}, {diff.high:.4g}] is {why} the slack {gate.min_difference:g}")


def _evidence_gate(
    gate: MetricGate,
    canary: Mapping[str, Sequence[Sample]],
    data_due: Mapping[str, bool],
    control: Mapping[str, Sequence[Sample]],
    control_history: Mapping[str, Sequence[Sample]],
    baseline: Baseline | None,
) -> _GateJudgement:
    """A `mean` gate: the canary cohort's per-window values against the control's, as an interval against the
    margin; each device judged alone too, so one clearly bad device fails (and goes back) without the others."""
    _median, suspects = control_figure(control, control_history, gate)
    ctl_windows = {d: readings(s, gate.metric) for d, s in control.items() if d not in suspects}
    ctl_windows = {d: v for d, v in ctl_windows.items() if len(v) >= gate.min_samples}
    ref: Mapping[str, Sequence[float]] | float | None = ctl_windows or None
    ref_src, ref_samples = "control", {d: control[d] for d in ctl_windows}
    if ref is None and baseline is not None and Baseline.key(gate) in baseline.figures:
        ref, ref_src = baseline.figures[Baseline.key(gate)], "baseline"
    if gate.compare == "absolute":
        ref = None
    windows: dict[str, list[float]] = {}
    short: dict[str, str] = {}
    for device, samples in canary.items():
        values = readings(samples, gate.metric)
        if len(values) < gate.min_samples:
            short[device] = f"{device}: {len(values)}/{gate.min_samples} samples of {gate.metric}"
        else:
            windows[device] = values
    means = {d: sum(v) / len(v) for d, v in windows.items()}
    suspects.update(canary_suspects(means, gate))
    windows = {d: v for d, v in windows.items() if d in means}
    worse: evidence.Worse = "higher" if gate.op in ("<=", "<") else "lower"
    need = evidence.Need(gate.min_devices, gate.min_windows)
    seed = evidence.seed_of(gate.label)
    args = dict(scale=_scale(gate), worse=worse, margin=gate.threshold, confidence=gate.confidence, seed=seed)
    ev = _combined(gate, windows, ref, need, args)
    failures: dict[str, str] = {}
    doubtful: list[str] = []  # devices whose own figure is beyond the margin, not yet with confidence
    ref_point = ev.control.mean if ev.control is not None else ref if isinstance(ref, float) else None
    for device, values in sorted(windows.items()):
        if ref_point is None and gate.compare != "absolute":
            break
        estimate = float(evidence.on_scale(means[device], ref_point or 0.0, _scale(gate)))
        if evidence.decide(estimate, estimate, estimate, gate.threshold, worse) != "fail":
            continue  # within the margin: its own interval cannot be wholly beyond it, so no bootstrap for it
        if gate.min_difference and ref_point is not None and evidence.decide(
                means[device] - ref_point, means[device] - ref_point, means[device] - ref_point,
                gate.min_difference, worse) != "fail":
            continue  # within the absolute slack
        alone = _combined(gate, {device: values}, ref, evidence.Need(1, gate.min_windows), args)
        if alone.status != "fail":
            doubtful.append(f"{device} looks beyond the margin ({estimate:.4g}) on {len(values)} windows; "
                            "waiting for enough to judge it alone")
        else:
            ctl = ref_point
            failures[device] = (f"{gate.label}: {device} has {alone.estimate:.4g} [{alone.low:.4g}, {alone.high:.4g}]"
                                f" ({gate.aggregate} {gate.metric} {means[device]:.4g}"
                                + (f", {ref_src} {ctl:.4g})" if ctl is not None else ")"))
    control_fig = ev.control.mean if ev.control is not None else ref if isinstance(ref, float) else None
    silent = {d: why for d, why in short.items() if data_due.get(d) and windows}
    waiting = [why for d, why in short.items() if d not in silent]
    frames_short = [f"{name} counted {n:.0f} results; needs {gate.min_frames}" for name, n in
                    (("canary", _frames({d: canary[d] for d in windows})), (ref_src, _frames(ref_samples)))
                    if gate.min_frames and (name == "canary" or ref_src == "control") and n < gate.min_frames]
    status: GateStatus
    if failures or (ev.status == "fail" and not frames_short):
        status = "fail"
        detail = "; ".join(failures.values()) if failures else f"{gate.label}: {ev.detail}"
    elif gate.optional and canary and not any(readings(s, gate.metric) for s in canary.values()):
        status, detail = "pass", f"no canary device reports {gate.metric} (optional gate)"
    elif waiting or frames_short or ev.status == "hold" or not windows or doubtful:
        status = "hold"
        left_out = [f"{d} is suspect ({why})" for d, why in sorted(suspects.items()) if d in canary]
        detail = "; ".join([*waiting, *frames_short, *doubtful, *([ev.detail] if windows else []),
                            *([] if windows or waiting else [*left_out, "no canary device has reported yet"])])
    else:
        status, detail = "pass", ev.detail
    if suspects and status != "hold":
        detail += f" ({len(suspects)} suspect devices left out)"
    j = _GateJudgement(GateResult(gate.label, status, ev.canary.mean, control_fig, gate.threshold, detail,
                                  tuple(sorted(failures)), suspects, ev.as_dict()))
    j.device_failures = failures
    j.silent = silent
    j.cohort_fail = status == "fail" and not failures
    return j


def _metric_gate(
    gate: MetricGate,
    canary: Mapping[str, Sequence[Sample]],
    data_due: Mapping[str, bool],
    control: Mapping[str, Sequence[Sample]],
    control_history: Mapping[str, Sequence[Sample]],
    baseline: Baseline | None,
) -> _GateJudgement:
    control_fig, suspects = control_figure(control, control_history, gate)
    control_src = "control"
    if control_fig is None and baseline is not None and Baseline.key(gate) in baseline.figures:
        control_fig, control_src = baseline.figures[Baseline.key(gate)], "baseline"
    figures: dict[str, float] = {}
    short: dict[str, str] = {}
    failures: dict[str, str] = {}
    for device, samples in canary.items():
        fig = device_figure(samples, gate)
        if fig is None:
            have = len(readings(samples, gate.metric))
            short[device] = f"{device}: {have}/{gate.min_samples} samples of {gate.metric}"
            continue
        figures[device] = fig
    suspects.update(canary_suspects(figures, gate))
    for device, fig in figures.items():
        value = compared(fig, control_fig, gate)
        if value is not None and not holds(value, gate.op, gate.threshold):
            failures[device] = f"{gate.label}: {device} has {value:.4g} ({gate.aggregate} {gate.metric} {fig:.4g}" + (
                f", {control_src} {control_fig:.4g})" if control_fig is not None and gate.compare != "absolute"
                else ")")
    canary_fig = worst(list(figures.values()), gate.op) if figures else None
    j = _GateJudgement(GateResult(gate.label, "pass", canary_fig, control_fig, gate.threshold))
    # A device short of data past its deadline is set aside when others have data; with none, the gate holds.
    silent = {d: why for d, why in short.items() if data_due.get(d) and figures}
    waiting = [why for d, why in short.items() if d not in silent]
    no_control = gate.compare != "absolute" and control_fig is None and bool(figures)
    left_out = [f"{d} is suspect ({why})" for d, why in sorted(suspects.items()) if d in canary]
    status: GateStatus
    if failures:
        status, detail = "fail", "; ".join(failures.values())
    elif waiting or no_control or not figures:
        status = "hold"
        detail = "; ".join([*waiting, *(["no control or baseline figure yet"] if no_control else []),
                            *([] if figures or waiting else [*left_out, "no canary device has reported yet"])])
    else:
        status, detail = "pass", f"{len(figures)} devices"
    if suspects and status != "hold":
        detail += f" ({len(suspects)} suspect devices left out)"
    j.result = GateResult(gate.label, status, canary_fig, control_fig, gate.threshold, detail, tuple(sorted(failures)),
                          suspects)
    j.device_failures = failures
    j.silent = silent
    return j


def _restarts_gate(gate: RestartsGate, restarts: Mapping[str, int]) -> _GateJudgement:
    failures = {d: f"{gate.label}: {d} restarted {n} times" for d, n in restarts.items() if n > gate.max_restarts}
    canary_fig = float(max(restarts.values())) if restarts else None
    status: GateStatus = "fail" if failures else ("pass" if restarts else "hold")
    detail = "; ".join(failures.values()) if failures else f"{len(restarts)} devices"
    return _GateJudgement(
        GateResult(gate.label, status, canary_fig, None, float(gate.max_restarts), detail, tuple(sorted(failures))),
        failures,
    )


def _cap(per_device: Mapping[str, Sequence[Sample]]) -> float:
    """The most results one device adds to its cohort's mix (robust.cohort_mix's cap)."""
    return contribution_cap([float(n) for s in per_device.values() if (n := claimed_results(s)) > 0])


def _psi_gate(
    gate: PsiGate | ScorePsiGate, canary: Mapping[str, Sequence[Sample]], control: Mapping[str, Sequence[Sample]],
    baseline: Baseline | None, window_s: float,
) -> _GateJudgement:
    fps = {d: f for d, samples in {**control, **canary}.items() if (f := fps_of(samples)) is not None}
    suspects = {d: f"canary: {why}" for d, why in result_suspects(canary, window_s, fps).items()}
    suspects.update({d: f"control: {why}" for d, why in result_suspects(control, window_s, fps).items()})
    can = {d: s for d, s in canary.items() if d not in suspects}
    ctl = {d: s for d, s in control.items() if d not in suspects}
    _mix, n_ref = cohort_mix(ctl)
    reference: evidence.Windows | Mapping[str, float] = {d: [x.class_counts for x in s] for d, s in ctl.items()}
    ref_src = "control"
    if n_ref < gate.min_results and baseline is not None and baseline.class_counts:
        reference, ref_src = dict(baseline.class_counts), "baseline"
    ev = evidence.psi_compare(
        {d: [x.class_counts for x in s] for d, s in can.items()}, reference, max_psi=gate.max_psi,
        cap_canary=_cap(can), cap_control=_cap(ctl), confidence=gate.confidence,
        need=evidence.Need(1, gate.min_windows), min_results=gate.min_results, seed=evidence.seed_of(gate.label),
        reference=ref_src,
    )
    left_out = f" ({len(suspects)} suspect devices left out)" if suspects else ""
    result = GateResult(gate.label, ev.status, ev.estimate, 0.0 if ev.estimate is not None else None, gate.max_psi,
                        ev.detail + left_out, suspects=suspects, evidence=ev.as_dict())
    return _GateJudgement(result, cohort_fail=ev.status == "fail")


def judge_stage(
    stage: Stage,
    target: int,
    canaries: Sequence[CanaryDevice],
    control: Mapping[str, Sequence[Sample]],
    baseline: Baseline | None,
    stage_started_ms: int,
    deadline_ms: int,
    now_ms: int,
) -> StageVerdict:
    """Judge a stage now from its canary devices and the control cohort's samples.

    `control` may hold more than the analysis window (the windows before it too): gates read the window, and a
    control device's readings over the whole span tell whether its reports are consistent enough to count.
    """
    progress = {c.device_id: device_progress(c, target, stage, now_ms) for c in canaries}
    since = now_ms - int(stage.window_s * 1000)
    control_window = {d: [s for s in samples if since <= s.ts_ms <= now_ms] for d, samples in control.items()}
    updated = [c for c in canaries if progress[c.device_id].state == "updated"]
    canary_samples = {c.device_id: window_samples(c, target, stage, now_ms) for c in updated}
    data_due = {
        c.device_id: (now_ms - (c.converged_ms or c.assigned_ms)) / 1000 >= stage.device_deadline_s for c in updated
    }
    judgements: list[_GateJudgement] = []
    for gate in stage.gates:
        if isinstance(gate, MetricGate):
            judge = _evidence_gate if gate.aggregate == "mean" else _metric_gate
            judgements.append(judge(gate, canary_samples, data_due, control_window, control, baseline))
        elif isinstance(gate, RestartsGate):
            judgements.append(_restarts_gate(gate, {c.device_id: c.restarts for c in updated}))
        elif isinstance(gate, PsiGate):
            judgements.append(_psi_gate(gate, canary_samples, control_window, baseline, stage.window_s))
        elif isinstance(gate, ScorePsiGate):  # the same PSI over score bins instead of classes
            scores = None if baseline is None else Baseline(class_counts=baseline.score_bins)
            judgements.append(_psi_gate(gate, score_bin_samples(canary_samples), score_bin_samples(control_window),
                                        scores, stage.window_s))
    outcomes = dict(progress)
    for j in judgements:
        for device, why in j.silent.items():
            if outcomes[device].state == "updated":
                outcomes[device] = DeviceOutcome(device, "failed", "silent", f"too little data: {why}")
        for device, why in j.device_failures.items():
            if outcomes[device].state != "failed" or outcomes[device].kind == "silent":
                outcomes[device] = DeviceOutcome(device, "failed", "gate", why)
    devices = tuple(outcomes[d] for d in sorted(outcomes))
    gates = tuple(j.result for j in judgements)
    counted = [d for d in devices if d.counts]
    budget = stage.failure_budget(len(devices))
    if len(counted) > budget:
        listed = "; ".join(f"{d.device_id}: {d.reason}" for d in counted[:5])
        return StageVerdict("fail", f"{len(counted)} of {len(devices)} devices failed (budget {budget}): {listed}",
                            gates, devices)
    cohort = [j.result for j in judgements if j.cohort_fail]
    if cohort:
        return StageVerdict("fail", "; ".join(f"{r.gate}: {r.detail}" for r in cohort), gates, devices)
    waiting: list[str] = []
    elapsed_s = (now_ms - stage_started_ms) / 1000
    if elapsed_s < stage.soak_s:
        waiting.append(f"soaking {elapsed_s:.0f}/{stage.soak_s:g} s")
    waiting += [f"{d.device_id}: {d.reason}" for d in devices if d.state == "pending"]
    if not any(d.state == "updated" for d in devices):
        waiting.append("no device runs the new version yet")
    waiting += [f"{r.gate}: {r.detail}" for r in gates if r.status == "hold"]
    if waiting:
        late = now_ms >= deadline_ms
        prefix = f"stage deadline passed with no verdict ({stage.on_deadline}): " if late else "holding: "
        return StageVerdict("deadline" if late else "hold", prefix + "; ".join(waiting), gates, devices)
    n_ok = sum(1 for d in devices if d.state == "updated")
    suspects = sorted({d for g in gates for d in g.suspects})
    left_out = f"; suspect devices left out: {', '.join(suspects)}" if suspects else ""
    return StageVerdict("pass", f"all {len(gates)} gates passed on {n_ok} devices after {elapsed_s:.0f} s{left_out}",
                        gates, devices)
