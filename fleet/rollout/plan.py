"""A staged rollout plan: stages, their gates and deadlines, validated once so a bad plan never starts.

A plan is a list of stages, each a share of the group that runs the new version, a minimum soak, an analysis
interval, gates, a failure budget and a deadline. Gates are of three kinds:

- `metric`: a figure from shared/metrics.py per canary device over the analysis window (mean/max/min/last of a
  gauge, or the `increase` of a counter), compared with a threshold either as is (`absolute`) or against the
  control cohort's figure (`ratio_to_control`, `difference_to_control`). A `mean` gate compares distributions of
  per-window values (fleet/rollout/evidence.py): the threshold is the margin, and it passes or fails only with
  `confidence` on at least `min_windows` windows, `min_devices` devices and `min_frames` results per cohort. The
  other aggregates are per-device invariants (a counter that must not grow);
- `restarts`: boot id changes of a canary device since it was assigned, from the registry;
- `psi`: population stability index of the canary cohort's prediction-class mix against the control cohort's;
- `score_psi`: the same for an anomaly model's score distribution (fleet/rollout/sensor_plan.py).

The default plan takes each task's own quality and shadow gates (`TaskGates`, chosen in fleet/rollout/task_gates.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from fleet.rollout.psi_gate import PsiSettings
from fleet.rollout.sensor_plan import ScorePsiGate
from shared.config_loader import read_yaml
from shared.errors import ConfigError
from shared.metrics import BY_NAME

Op = Literal["<=", ">=", "<", ">"]
Aggregate = Literal["mean", "max", "min", "last", "increase"]
Compare = Literal["absolute", "ratio_to_control", "difference_to_control"]
OnDeadline = Literal["pause", "fail"]


class MetricGate(BaseModel):
    """A telemetry figure every canary device must meet over the analysis window, e.g. e2e_ms_p95 ratio <= 1.5."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["metric"] = Field(default="metric", description="Gate kind: a per-device telemetry figure.")
    metric: str = Field(description="Telemetry figure declared in shared/metrics.py (e.g. e2e_ms_p95, conf_mean).")
    op: Op = Field(description="Comparison of the device's figure with the threshold: <=, >=, < or >.")
    threshold: float = Field(description="Limit the figure (or its ratio/difference to control) is compared with.")
    aggregate: Aggregate = Field(
        default="mean", description="How a device's samples in the window combine: mean, max, min, last, or "
        "increase (a counter's growth over the window, restarts counted as resets).",
    )
    compare: Compare = Field(
        default="absolute", description="absolute: the device's figure; ratio_to_control / difference_to_control: "
        "the figure divided by / minus the control cohort's figure for the same window.",
    )
    min_samples: int = Field(default=3, ge=1, description="Samples a device must report before it is judged.")
    confidence: float = Field(
        default=0.95, ge=0.5, lt=1, description="One-sided confidence of the interval a `mean` gate reads: it passes "
        "when the new version is not worse than the threshold (the margin) with this confidence, fails when it is "
        "worse with it, and holds otherwise.",
    )
    min_windows: int = Field(
        default=6, ge=2, description="Telemetry windows each cohort (and each device judged alone) must have before "
        "a `mean` gate passes or fails: one device in one window never decides.",
    )
    min_devices: int = Field(default=1, ge=1, description="Devices each cohort must have before a `mean` gate "
                             "passes or fails.")
    min_frames: int = Field(default=0, ge=0, description="Results (results_window summed) each cohort must have "
                            "counted in its windows before a `mean` gate passes or fails.")
    min_difference: float = Field(
        default=0.0, ge=0, description="For ratio_to_control: the canary must also be worse than control by more "
        "than this, in the figure's own unit, to fail (and passes when it is not, with confidence): a 1.5x ratio of "
        "3 ms is scheduling noise, not a slower model.",
    )
    optional: bool = Field(
        default=False, description="Pass (with a note) when no canary device reports the figure at all, e.g. the "
        "shadow check on devices without sync.shadow_every; otherwise such a gate holds.",
    )

    @field_validator("metric")
    @classmethod
    def _declared(cls, v: str) -> str:
        if v not in BY_NAME:
            raise ValueError(f"metric {v!r} is not declared in shared/metrics.py")
        return v

    @model_validator(mode="after")
    def _counter_needs_increase(self) -> MetricGate:
        if self.aggregate == "increase" and self.min_samples < 2:
            raise ValueError("aggregate 'increase' needs min_samples >= 2 (a growth needs two readings)")
        return self

    @property
    def label(self) -> str:
        """Readable gate name for status and history."""
        how = {"absolute": "", "ratio_to_control": " / control", "difference_to_control": " - control"}[self.compare]
        return f"{self.aggregate} {self.metric}{how} {self.op} {self.threshold:g}"


class RestartsGate(BaseModel):
    """Boot id changes of a canary device since it received the new version (a crash loop fails it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["restarts"] = Field(description="Gate kind: agent restarts seen by the registry.")
    max_restarts: int = Field(default=0, ge=0, description="Restarts a device may have since it was assigned.")

    @property
    def label(self) -> str:
        """Readable gate name for status and history."""
        return f"restarts <= {self.max_restarts}"


class PsiGate(PsiSettings):
    """Shift of the prediction-class mix of the canary cohort against the control cohort (same group, window)."""

    what: ClassVar[str] = "class-mix"

    kind: Literal["psi"] = Field(description="Gate kind: population stability index of the class mix.")


def _gate_kind(v: Any) -> str:
    """A gate without `kind` is a metric gate, so plans stay short."""
    if isinstance(v, dict):
        return str(v.get("kind", "metric"))
    return str(getattr(v, "kind", "metric"))


Gate = Annotated[
    Annotated[MetricGate, Tag("metric")] | Annotated[RestartsGate, Tag("restarts")] | Annotated[PsiGate, Tag("psi")]
    | Annotated[ScorePsiGate, Tag("score_psi")],
    Discriminator(_gate_kind),
]


class Stage(BaseModel):
    """One step of a rollout: a share of the group, a soak, the gates it must pass and its deadline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=32, description="Stage name shown in status, e.g. canary.")
    percent: float = Field(gt=0, le=100, description="Share of the group (percent) on the new version in this stage.")
    soak_s: float = Field(default=300, ge=0, description="Time the stage must run before it can pass.")
    analysis_interval_s: float = Field(default=60, gt=0, description="Time between two analyses of the stage.")
    window_s: float = Field(
        default=600, gt=0, description="Telemetry analysed: the last window_s seconds (from when a device converged)."
    )
    gates: list[Gate] = Field(default_factory=list, description="Conditions the canary devices must meet.")
    max_failed_devices: int = Field(
        default=0, ge=0, description="Canary devices that may fail (gate, reject, timeout) before the stage fails."
    )
    max_failed_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of the stage's devices that may fail; the larger budget counts."
    )
    device_deadline_s: float = Field(
        default=600, gt=0, description="Time a device has to report the new version before it counts as failed."
    )
    deadline_s: float = Field(
        default=3600, gt=0, description="Time after which a stage still without a verdict does `on_deadline`."
    )
    on_deadline: OnDeadline = Field(
        default="pause", description="What an inconclusive stage does at its deadline: pause (default) or fail."
    )

    @model_validator(mode="after")
    def _deadline_after_soak(self) -> Stage:
        if self.deadline_s < self.soak_s:
            raise ValueError(f"deadline_s ({self.deadline_s:g}) is shorter than soak_s ({self.soak_s:g})")
        return self

    def failure_budget(self, devices: int) -> int:
        """Failed devices the stage tolerates among `devices`."""
        return max(self.max_failed_devices, int(self.max_failed_share * devices + 1e-9))


class RolloutPlan(BaseModel):
    """The stages of a rollout, in order; the last one takes the whole group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[Stage] = Field(min_length=1, description="Stages in order, with increasing shares; the last 100.")
    rollback_on_fail: bool = Field(
        default=True, description="On a failed stage, return every device that received the version to its prior one."
    )

    @field_validator("stages")
    @classmethod
    def _increasing(cls, v: list[Stage]) -> list[Stage]:
        shares = [s.percent for s in v]
        if any(b <= a for a, b in itertools.pairwise(shares)):
            raise ValueError(f"stage shares must increase from stage to stage, got {shares}")
        if shares[-1] != 100:
            raise ValueError(f"the last stage must take 100 percent of the group, got {shares[-1]:g}")
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return v


# The default gates' margins and samples, chosen from the runs in bench/results/rollout-gates.md.
DEFAULT_MIN_WINDOWS = 12  # a minute of 5 s telemetry per device judged alone
SHADOW_MIN_AGREEMENT = 0.9
# Real agents on a loaded 2-core machine: a canary running the shadow check had a steady e2e p95 of 5.4 ms against
# control's 3.5 ms (ratio 1.55 with a tight interval) for the same model; below 10 ms a ratio says nothing.
LATENCY_MIN_DIFFERENCE_MS = 10.0  # a retrained good digits model agrees ~0.99 with its predecessor; a permuted one ~0.1


@dataclass(frozen=True)
class TaskGates:
    """A task's own gates in the default plan: quality gates every stage reads, and shadow gates canaries add."""

    quality: tuple[Gate, ...]
    shadow: tuple[Gate, ...] = ()


def health_gates() -> list[Gate]:
    """Gates every task's default plan starts with: no errors, no restarts, no slowdown beyond the margin."""
    return [
        MetricGate(metric="thread_errors", op="<=", threshold=0, aggregate="increase", min_samples=2),
        MetricGate(metric="cmd_errors", op="<=", threshold=0, aggregate="increase", min_samples=2),
        RestartsGate(kind="restarts", max_restarts=0),
        MetricGate(metric="e2e_ms_p95", op="<=", threshold=1.5, compare="ratio_to_control",
                   min_windows=DEFAULT_MIN_WINDOWS, min_difference=LATENCY_MIN_DIFFERENCE_MS),
    ]


def prediction_gates() -> TaskGates:
    """Classifiers' and detectors' quality gates: confidence and class mix against control, top-1 shadow."""
    return TaskGates(
        quality=(
            MetricGate(metric="conf_mean", op=">=", threshold=-0.1, compare="difference_to_control",
                       min_windows=DEFAULT_MIN_WINDOWS, min_frames=200),
            MetricGate(metric="low_conf_share", op="<=", threshold=0.1, compare="difference_to_control",
                       min_windows=DEFAULT_MIN_WINDOWS, min_frames=200),
            PsiGate(kind="psi", max_psi=0.2, min_results=200, min_windows=DEFAULT_MIN_WINDOWS),
        ),
        shadow=(shadow_gate(),),
    )


def shadow_gate() -> MetricGate:
    """Top-1 agreement with the previous version on the same frames: the one check a label-permuted model on a
    balanced scene cannot pass (its class mix and confidence look like the old one's). The fleet marks canaries in
    their desired state and a canary runs the check when the previous version's measured run time is within its
    sync.shadow_canary_budget_ms (edge.shadow_policy). Optional: canaries that cannot afford it (or agents older than
    the mark) do not hold the stage.
    """
    return MetricGate(metric="shadow_agreement", op=">=", threshold=SHADOW_MIN_AGREEMENT,
                      min_windows=DEFAULT_MIN_WINDOWS, optional=True)


def default_plan(shadow_canary: bool = True, task: TaskGates | None = None) -> RolloutPlan:
    """10% -> 50% -> 100%: health and the task's quality gates against the control cohort (for a classifier, class
    mix and confidence catch a wrong model without a shadow), its shadow gates on the canary stage, pause at a
    deadline. `task`: the served task's gates (fleet/rollout/task_gates.py); None: a classifier's."""
    own = task or prediction_gates()
    gates = [*health_gates(), *own.quality]
    return RolloutPlan(
        stages=[
            Stage(name="canary", percent=10, soak_s=300, gates=[*gates, *(own.shadow if shadow_canary else ())]),
            Stage(name="half", percent=50, soak_s=300, gates=gates, max_failed_share=0.05),
            Stage(name="all", percent=100, soak_s=120, gates=gates, max_failed_share=0.05),
        ]
    )


_TAGS = {"metric", "restarts", "psi", "score_psi"}


def _where(loc: tuple[int | str, ...]) -> str:
    """The error's place as the plan spells it: the union tag pydantic inserts after a gate index is dropped."""
    parts = [
        str(p) for i, p in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "gates" and isinstance(loc[i - 1], int) and p in _TAGS)
    ]
    return ".".join(parts) or "<root>"


def plan_error(exc: ValidationError, source: str) -> str:
    """A plan's first validation error as one line naming where in the plan it is."""
    first = exc.errors()[0]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "union_tag_invalid":
        tag = str(first["ctx"]["tag"]).strip("'")
        msg = f"unknown gate kind {tag!r}; gate kinds are metric, restarts, psi and score_psi"
    return f"plan {source}: {_where(tuple(first['loc']))}: {msg}{more}"


def parse_plan(data: Any, source: str = "<plan>") -> RolloutPlan:
    """Validate a plan mapping; ConfigError with one line for anything wrong."""
    try:
        return RolloutPlan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(plan_error(exc, source)) from exc


def load_plan(path: Path) -> RolloutPlan:
    """A plan from a YAML file (`stages: [...]`); ConfigError with one line naming the file and the key."""
    return parse_plan(read_yaml(path), str(path))
