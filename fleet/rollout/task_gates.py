"""The one place that says which gates a task's default plan carries: each task's own quality and shadow gates.

Keyed by the manifest's task. A sensor classifier is a `classification` model (a window recipe instead of an image
one): its class mix, confidence and top-1 shadow gates read as they do for images. Tasks not listed get those too.
"""

from __future__ import annotations

from collections.abc import Callable

from fleet.rollout.plan import RolloutPlan, TaskGates, default_plan, prediction_gates
from fleet.rollout.sensor_gates import anomaly_gates

_BY_TASK: dict[str, Callable[[], TaskGates]] = {
    "classification": prediction_gates,
    "detection": prediction_gates,
    "anomaly": anomaly_gates,
}


def gates_for(task: str) -> TaskGates:
    """The task's own gates (a classifier's for a task this build does not list)."""
    return _BY_TASK.get(task, prediction_gates)()


def default_plan_for(task: str, shadow_canary: bool = True) -> RolloutPlan:
    """The default plan with the served task's gates."""
    return default_plan(shadow_canary, gates_for(task))
