"""Transitions as pure changes: what a completing decision writes for each device of the rollout."""

from __future__ import annotations

from fleet.rollout import transitions
from fleet.rollout.plan import default_plan
from fleet.rollout.store import Change, DeviceRow, RolloutRow


def row() -> RolloutRow:
    plan = default_plan()
    return RolloutRow(id="ro-1", fleet="f", group="lab", model="digits", version=2, plan=plan, state="running",
                      stage_index=len(plan.stages) - 1, stage_started_ms=0, deadline_ms=10**9, next_analysis_ms=0,
                      last_decision=None, last_reason="", last_gates=[], baseline={}, group_want=False,
                      group_sent=False, created_ms=0, updated_ms=0, finished_ms=None, rev=1)


def device(device_id: str, state: str = "updated", fail_kind: str | None = None) -> DeviceRow:
    return DeviceRow(device_id=device_id, stage_index=2, assigned_ms=0, prior_version=1, prior_override=False,
                     restarts_base=0, converged_ms=0, state=state, fail_kind=fail_kind, reason="", want_action="set",
                     want_version=2, want_downgrade=False, want_serial=1, sent_serial=1)


def test_a_device_failing_in_the_completing_decision_keeps_its_way_back() -> None:
    """Issue 17: the last stage passes within its budget in the verdict that fails a device; completing must not
    replace that device's return to version 1 with 'follow the group' (now version 2)."""
    devices = [device("ok"), device("bad"), device("earlier", "failed", "gate")]
    change = Change()
    transitions.restore(change, devices[1], state="failed", fail_kind="gate", reason="too slow")  # this decision
    transitions.advance(change, row(), devices, 1000, "controller", "all gates passed", {})
    assert change.rollout["state"] == "completed" and change.release_group
    assert change.device_updates["bad"]["want_action"] == "set" and change.device_updates["bad"]["want_version"] == 1
    assert change.device_updates["ok"]["want_action"] == "clear"  # follows the group's version 2
    assert "earlier" not in change.device_updates  # sent back when it failed, stays pinned
