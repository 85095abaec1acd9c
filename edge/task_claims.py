"""One model per task on an agent: a detector's tracker and an anomaly model's alert rule (and the quality figures
the rollout gates read) are kept per task, so a second model of a task would restart or mix the first one's."""

from __future__ import annotations

from collections.abc import Mapping

from edge.errors import PackageRejected


def check_task_claim(model: str, task: str, served: Mapping[str, str]) -> None:
    """PackageRejected when another served model (name -> task) already has this task; it is not served."""
    for other, other_task in served.items():
        if other != model and other_task == task:
            raise PackageRejected(
                f"{model} is a {task} model and {other} already serves {task} on this agent; one agent serves one "
                f"model per task (its tracker, alerts and quality figures are per task): serve {model} on another "
                "agent or choose a model of another task"
            )
