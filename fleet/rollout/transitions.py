"""The changes a rollout transition writes: advance, complete, roll back, pause, resume (one Change each).

Shared by the controller (gate verdicts, deadlines) and by operator commands (promote, abort, pause, resume), so
both write the same rows and audit entries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from fleet.rollout.store import Change, DeviceRow, RolloutRow

# Failed devices whose desired state goes back to their prior version at once (they say the version is bad for
# them); offline and silent devices keep the new version and converge when they return.
RESTORE_KINDS = frozenset({"rejected", "timeout", "reverted", "gate"})


def counts(devices: Sequence[DeviceRow]) -> dict[str, int]:
    """Devices per state."""
    return dict(sorted(Counter(d.state for d in devices).items()))


def restore(change: Change, device: DeviceRow, **more: Any) -> None:
    """Queue the device's return to the version it had before the rollout (downgrade allowed)."""
    if device.prior_version is None:
        change.want(device.device_id, "clear", None, False, device.want_serial + 1, **more)
    else:
        change.want(device.device_id, "set", device.prior_version, True, device.want_serial + 1, **more)


def advance(change: Change, row: RolloutRow, devices: Sequence[DeviceRow], now_ms: int, actor: str, reason: str,
            figures: Mapping[str, Any]) -> None:
    """Move to the next stage, or complete the rollout after the last one."""
    nxt = row.stage_index + 1
    if nxt < len(row.plan.stages):
        stage = row.plan.stages[nxt]
        change.rollout.update(stage_index=nxt, stage_started_ms=now_ms, state="running",
                              deadline_ms=now_ms + int(stage.deadline_s * 1000),
                              next_analysis_ms=now_ms + int(stage.analysis_interval_s * 1000))
        change.event("promote" if actor == "operator" else "advance", nxt, actor,
                     f"stage {stage.name} ({stage.percent:g} %): {reason}", figures)
        return
    change.rollout.update(state="completed", finished_ms=now_ms, group_want=True)
    change.release_group = True
    for d in devices:
        queued = change.device_updates.get(d.device_id, {})
        if (d.state == "failed" and d.fail_kind in RESTORE_KINDS) or "want_action" in queued:
            continue  # sent back when it failed (in this decision too): it keeps its prior version
        change.want(d.device_id, "clear", None, False, d.want_serial + 1)
    change.event("complete", row.stage_index, actor, f"group {row.group} moves to version {row.version}: {reason}",
                 {**figures, "devices": counts(devices)})


def roll_back(change: Change, row: RolloutRow, devices: Sequence[DeviceRow], now_ms: int, actor: str, reason: str,
              figures: Mapping[str, Any]) -> None:
    """End the rollout: every device it gave the version to returns to its prior desired state."""
    aborted = actor == "operator"
    change.rollout.update(state="aborted" if aborted else "failed", finished_ms=now_ms)
    change.release_group = True
    if aborted or row.plan.rollback_on_fail:
        for d in devices:
            queued = change.device_updates.get(d.device_id, {})
            if (d.state == "failed" and d.fail_kind in RESTORE_KINDS) or "want_action" in queued:
                continue  # already sent back when it failed
            restore(change, d, **({} if queued.get("state") == "failed" else {"state": "rolled_back"}))
    change.event("abort" if aborted else "rollback", row.stage_index, actor, reason,
                 {**figures, "devices": counts(devices)})


def pause(change: Change, row: RolloutRow, actor: str, reason: str, figures: Mapping[str, Any] | None = None) -> None:
    """Stop analysing and advancing; devices keep what they have."""
    change.rollout.update(state="paused")
    change.event("pause", row.stage_index, actor, reason, figures)


def resume(change: Change, row: RolloutRow, now_ms: int, reason: str) -> None:
    """Run again; the stage's deadline restarts now, so a deadline pause does not fire again at once."""
    stage = row.plan.stages[row.stage_index]
    change.rollout.update(state="running", deadline_ms=now_ms + int(stage.deadline_s * 1000), next_analysis_ms=now_ms)
    change.event("resume", row.stage_index, "operator", reason)
