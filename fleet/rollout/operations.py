"""Operator actions on rollouts: start, pause, resume, promote, abort, and the status and history views.

Each action is one transaction on the database; `fleet serve`'s controller publishes the desired state an action
records (for abort: every device back to its prior version) on its next tick.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.db.store import FleetStore
from fleet.desired_reach import check_desired_reach
from fleet.errors import EmptyGroupError, RolloutConflictError, RolloutStateError, UnknownRolloutError
from fleet.registry import DeviceRecord
from fleet.rollout import cohorts, transitions
from fleet.rollout.controller import CONTROL_HISTORY_WINDOWS, as_sample
from fleet.rollout.plan import MetricGate, RolloutPlan
from fleet.rollout.robust import cohort_mix, control_figure, fps_of, result_suspects
from fleet.rollout.sensor_gates import score_bin_samples
from fleet.rollout.store import Change, DeviceRow, EventRow, RolloutRepository, RolloutRow
from fleet.rollout.task_gates import default_plan_for
from fleet.rollout.verdict import Baseline
from shared.manifest import Manifest
from shared.names import check_ident

VersionCheck = Callable[[str, int], object]


@dataclass(frozen=True)
class RolloutStatus:
    """What `rollout status` shows: the rollout, its stage, devices per state, each gate, suspects, the last reason."""

    rollout: RolloutRow
    devices: list[DeviceRow]
    unsent: int
    claimants: list[str] = field(default_factory=list)

    @property
    def stage_name(self) -> str:
        """The current stage's name."""
        return self.rollout.plan.stages[self.rollout.stage_index].name

    def suspects(self) -> dict[str, list[str]]:
        """Devices left out of the last verdict's figures or of the cohorts, each with why."""
        out: dict[str, list[str]] = {}
        for g in self.rollout.last_gates:
            for device, why in dict(g.get("suspects") or {}).items():
                out.setdefault(device, []).append(f"{g.get('gate')}: {why}")
        for device in self.claimants:
            out.setdefault(device, []).append(cohorts.claim_reason(self.rollout.group))
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        """JSON form for `--json`."""
        r = self.rollout
        stage = r.plan.stages[r.stage_index]
        return {
            "id": r.id, "fleet": r.fleet, "group": r.group, "model": r.model, "version": r.version, "state": r.state,
            "stage": {"index": r.stage_index, "name": stage.name, "percent": stage.percent,
                      "started_ms": r.stage_started_ms, "deadline_ms": r.deadline_ms},
            "stages": len(r.plan.stages), "devices": transitions.counts(self.devices),
            "device_detail": [{"device_id": d.device_id, "state": d.state, "kind": d.fail_kind, "reason": d.reason}
                              for d in self.devices],
            "gates": r.last_gates, "last_decision": r.last_decision, "last_reason": r.last_reason,
            "suspects": self.suspects(),
            "cohorts": "assigned or claimed" if cohorts.trusts_device_groups(r.baseline) else "assigned",
            "unsent_desired": self.unsent, "created_ms": r.created_ms, "finished_ms": r.finished_ms,
        }


def _baseline(store: FleetStore, plan: RolloutPlan, members: list[str], now_ms: int) -> dict[str, Any]:
    """The group's figures before anything changed: the control for gates once no device is left on the old one.

    Built like a control cohort's figures: medians over devices whose reports are consistent, a class mix with
    each device's contribution capped, and devices whose result claims are impossible left out.
    """
    first = plan.stages[0]
    window_ms = int(first.window_s * 1000)
    since = now_ms - window_ms * CONTROL_HISTORY_WINDOWS
    history = {d: [as_sample(s) for s in store.telemetry_window(d, since, now_ms + 1)] for d in members}
    window = {d: [s for s in samples if s.ts_ms >= now_ms - window_ms] for d, samples in history.items()}
    figures: dict[str, float] = {}
    for stage in plan.stages:
        for gate in stage.gates:
            if isinstance(gate, MetricGate) and Baseline.key(gate) not in figures:
                value, _suspects = control_figure(window, history, gate)
                if value is not None:
                    figures[Baseline.key(gate)] = value
    fps = {d: f for d, samples in window.items() if (f := fps_of(samples)) is not None}
    suspect = result_suspects(window, first.window_s, fps)
    mix, evidence = cohort_mix({d: s for d, s in window.items() if d not in suspect})
    bins = score_bin_samples(window)
    odd = result_suspects(bins, first.window_s, fps)
    scores, scored = cohort_mix({d: s for d, s in bins.items() if d not in odd})
    return {"figures": figures, "class_counts": {label: share * evidence for label, share in mix.items()},
            "score_bins": {name: share * scored for name, share in scores.items()}}


class RolloutOperations:
    """Operator actions on the rollouts of one fleet."""

    def __init__(self, store: FleetStore, clock: Callable[[], int] | None = None,
                 trust_device_groups: bool = False) -> None:
        # trust_device_groups: the fleet config's controller.trust_device_groups, recorded in each rollout started.
        self.store = store
        self.clock = clock or store.clock
        self.trust_device_groups = trust_device_groups
        self.repo = RolloutRepository(store.engine, store.fleet)

    def members(self, group: str) -> list[DeviceRecord]:
        """The devices a rollout of `group` started now would draw its cohorts from; EmptyGroupError when none."""
        records = self.store.list_devices()
        found = cohorts.members(records, group, self.trust_device_groups)
        if found:
            return found
        claiming = cohorts.claimants(records, group, self.trust_device_groups)
        if claiming:
            listed = ", ".join(claiming[:5]) + (f" and {len(claiming) - 5} more" if len(claiming) > 5 else "")
            raise EmptyGroupError(
                f"group {group!r} of fleet {self.store.fleet!r} has no devices assigned to it here; {len(claiming)} "
                f"name it in their own state ({listed}), which alone does not put a device into a rollout: assign "
                f"them with 'edgeferry fleet groups assign DEVICE {group}', or set controller.trust_device_groups"
            )
        self.store.group_members(group)  # raises EmptyGroupError listing the groups there are
        raise EmptyGroupError(f"group {group!r} of fleet {self.store.fleet!r} has no devices")

    def start(self, model: str, version: int, group: str, plan: RolloutPlan | None = None,
              check_version: VersionCheck | None = None) -> RolloutRow:
        """Start a rollout of model version to group; one clear error and no change when anything is wrong."""
        check_ident(model, "model name")
        check_ident(group, "group")
        if version < 1:
            raise RolloutStateError(f"version must be 1 or more, got {version}")
        running = self.repo.active_for_group(group)
        if running is not None:  # checked again atomically by the insert
            raise RolloutConflictError(
                f"group {group!r} of fleet {self.store.fleet!r} already has a rollout running ({running.id}, "
                f"{running.model} v{running.version}, {running.state}); abort it or wait for it to finish"
            )
        records = self.members(group)
        check_desired_reach(model, records)
        members = [r.device_id for r in records]
        checked = check_version(model, version) if check_version is not None else None
        # Without a plan, the default one with the gates of the task the version serves (fleet/rollout/task_gates).
        plan = plan or default_plan_for(checked.task if isinstance(checked, Manifest) else "classification")
        now = self.clock()
        first = plan.stages[0]
        rollout_id = f"ro-{secrets.token_hex(6)}"
        values = {
            "id": rollout_id, "group_name": group, "model": model, "version": version,
            "plan": plan.model_dump(mode="json"), "state": "running", "stage_index": 0, "stage_started_ms": now,
            "deadline_ms": now + int(first.deadline_s * 1000),
            "next_analysis_ms": now + int(first.analysis_interval_s * 1000), "last_decision": None,
            "last_reason": "started", "last_gates": [],
            "baseline": {**_baseline(self.store, plan, members, now),
                         cohorts.TRUST_KEY: self.trust_device_groups},
            "group_want": False, "group_sent": False, "created_ms": now, "updated_ms": now, "finished_ms": None,
            "rev": 0,
        }
        stages = " -> ".join(f"{s.name} {s.percent:g}%" for s in plan.stages)
        self.repo.create(values, {"ts_ms": now, "kind": "start", "stage_index": 0, "actor": "operator",
                                  "reason": f"{model} v{version} to group {group} ({len(members)} devices): {stages}",
                                  "figures": {"devices": len(members)}})
        return self.repo.get(rollout_id)

    def resolve(self, ref: str | None) -> RolloutRow:
        """A rollout by id, or the running (else latest) one of a group, or the latest of the fleet."""
        if ref is None:
            latest = self.repo.latest(limit=1)
            if not latest:
                raise UnknownRolloutError(f"fleet {self.store.fleet!r} has no rollouts yet")
            return latest[0]
        try:
            return self.repo.get(ref)
        except UnknownRolloutError:
            by_group = self.repo.active_for_group(ref) or next(iter(self.repo.latest(group=ref, limit=1)), None)
            if by_group is None:
                raise
            return by_group

    def _act(self, ref: str | None, build: Callable[[Change, RolloutRow, list[DeviceRow], int], None]) -> RolloutRow:
        for _ in range(5):
            row = self.resolve(ref)
            change = Change()
            now = self.clock()
            build(change, row, self.repo.devices(row.id), now)
            if self.repo.apply(row, change, now):
                return self.repo.get(row.id)
        raise RolloutStateError(f"rollout {ref} kept changing under this command; try again")

    def pause(self, ref: str | None, reason: str = "paused by the operator") -> RolloutRow:
        """Stop a running rollout where it is."""
        def build(change: Change, row: RolloutRow, _devices: list[DeviceRow], _now: int) -> None:
            self._need(row, ("running",), "pause")
            transitions.pause(change, row, "operator", reason)
        return self._act(ref, build)

    def resume(self, ref: str | None, reason: str = "resumed by the operator") -> RolloutRow:
        """Run a paused rollout again (its stage deadline restarts)."""
        def build(change: Change, row: RolloutRow, _devices: list[DeviceRow], now: int) -> None:
            self._need(row, ("paused",), "resume")
            transitions.resume(change, row, now, reason)
        return self._act(ref, build)

    def promote(self, ref: str | None, reason: str = "promoted by the operator") -> RolloutRow:
        """Skip to the next stage now (or complete at the last), whatever the gates say."""
        def build(change: Change, row: RolloutRow, devices: list[DeviceRow], now: int) -> None:
            self._need(row, ("running", "paused"), "promote")
            transitions.advance(change, row, devices, now, "operator", reason, {"gates": row.last_gates})
        return self._act(ref, build)

    def abort(self, ref: str | None, reason: str = "aborted by the operator") -> RolloutRow:
        """End the rollout and return every device it reached to its prior version."""
        def build(change: Change, row: RolloutRow, devices: list[DeviceRow], now: int) -> None:
            self._need(row, ("running", "paused"), "abort")
            transitions.roll_back(change, row, devices, now, "operator", reason, {"gates": row.last_gates})
        return self._act(ref, build)

    def status(self, ref: str | None) -> RolloutStatus:
        """The rollout's stage, devices per state, gates and the reason of its last decision."""
        row = self.resolve(ref)
        claiming = cohorts.claimants(self.store.devices.all(), row.group, cohorts.trusts_device_groups(row.baseline))
        return RolloutStatus(row, self.repo.devices(row.id), self.repo.count_unsent(row.id), claiming)

    def history(self, ref: str | None) -> tuple[RolloutRow, list[EventRow]]:
        """Every transition of the rollout with the figures it was decided on."""
        row = self.resolve(ref)
        return row, self.repo.events(row.id)

    @staticmethod
    def _need(row: RolloutRow, states: tuple[str, ...], action: str) -> None:
        if row.state not in states:
            raise RolloutStateError(f"cannot {action} rollout {row.id}: it is {row.state}"
                                    f" (only a {' or '.join(states)} rollout can be told to {action})")
