"""Contract for staged fleet rollouts gated on live telemetry: plan schema and pure stage verdicts."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.metrics import BY_NAME
from shared.names import check_ident

Op = Literal["<=", ">=", "<", ">"]
Aggregate = Literal["mean", "max", "min", "last"]


class Gate(BaseModel):
    """A telemetry condition every device of a stage must meet, e.g. e2e_ms_p99 <= 50."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="Metric name from shared/metrics.py.")
    op: Op = Field(description="Comparison against the threshold.")
    threshold: float = Field(description="Limit the aggregated metric is compared with.")
    aggregate: Aggregate = Field(default="mean", description="How a device's samples in the window combine.")
    min_samples: int = Field(default=3, ge=1, description="Samples a device must report before it is judged.")

    @field_validator("metric")
    @classmethod
    def _declared(cls, v: str) -> str:
        if v not in BY_NAME:
            raise ValueError(f"metric {v!r} is not declared in shared/metrics.py")
        return v


class Stage(BaseModel):
    """One step of a rollout: a share of the fleet, a soak time, and the gates it must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Stage name, e.g. canary.")
    percent: float = Field(gt=0, le=100, description="Share of the fleet running the new version at this stage.")
    soak_s: float = Field(ge=0, description="Time the stage must run before it can pass.")
    gates: list[Gate] = Field(default_factory=list, description="Conditions every updated device must meet.")
    max_failed_devices: int = Field(default=0, ge=0, description="Devices allowed to fail a gate.")


class RolloutPlan(BaseModel):
    """A staged rollout of one model version to one fleet, with automatic rollback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fleet: str = Field(description="Fleet to roll out to.")
    model: str = Field(description="Model name.")
    version: int = Field(ge=1, description="Version being rolled out.")
    stages: list[Stage] = Field(min_length=1, description="Stages in order; the last usually 100 percent.")
    rollback_on_fail: bool = Field(default=True, description="Send rollback to updated devices on a failed gate.")

    _ids = field_validator("fleet", "model")(lambda cls, v: check_ident(v, "fleet or model"))

    @field_validator("stages")
    @classmethod
    def _increasing(cls, v: list[Stage]) -> list[Stage]:
        shares = [s.percent for s in v]
        if shares != sorted(shares):
            raise ValueError("stage percentages must not decrease")
        return v


@dataclass(frozen=True)
class Verdict:
    """Outcome of judging a stage now: pass (advance), fail (roll back) or wait (keep soaking)."""

    status: Literal["pass", "fail", "wait"]
    reasons: list[str] = field(default_factory=list)


def devices_for_stage(devices: Sequence[str], percent: float, salt: str) -> list[str]:
    """Deterministic subset: the same devices stay in as the percentage grows (rank by salted hash)."""
    ranked = sorted(devices, key=lambda d: hashlib.sha256(f"{salt}:{d}".encode()).hexdigest())
    count = max(1, math.ceil(len(ranked) * percent / 100)) if ranked else 0
    return sorted(ranked[:count])


def _aggregate(values: Sequence[float], how: Aggregate) -> float:
    if how == "mean":
        return sum(values) / len(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return values[-1]


def _holds(value: float, op: Op, threshold: float) -> bool:
    return {
        "<=": value <= threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        ">": value > threshold,
    }[op]


def judge_stage(
    stage: Stage,
    samples: Mapping[str, Sequence[Mapping[str, float]]],
    updated: Sequence[str],
    elapsed_s: float,
) -> Verdict:
    """Judge a stage from each updated device's telemetry samples since it switched versions."""
    failed: list[str] = []
    waiting: list[str] = []
    for device in updated:
        device_samples = samples.get(device, [])
        for gate in stage.gates:
            values = [s[gate.metric] for s in device_samples if gate.metric in s]
            if len(values) < gate.min_samples:
                waiting.append(f"{device}: {len(values)}/{gate.min_samples} samples of {gate.metric}")
                continue
            agg = _aggregate(values, gate.aggregate)
            if not _holds(agg, gate.op, gate.threshold):
                failed.append(
                    f"{device}: {gate.aggregate} {gate.metric} = {agg:.4g}, needs {gate.op} {gate.threshold:g}"
                )
    if len({f.split(':')[0] for f in failed}) > stage.max_failed_devices:
        return Verdict("fail", failed)
    if waiting or elapsed_s < stage.soak_s:
        reasons = waiting + ([f"soaking {elapsed_s:.0f}/{stage.soak_s:.0f} s"] if elapsed_s < stage.soak_s else [])
        return Verdict("wait", reasons)
    return Verdict("pass", failed)
