"""The rollout controller: one `tick()` assigns devices, judges stages and sends desired state, crash-safely.

All state is in the database. Each decision is one transaction guarded by the rollout's rev (an operator command
in between wins and the controller re-reads next tick). A transition records the desired state each device should
get (an outbox); `flush()` publishes it and marks it sent, so a kill -9 anywhere resends the same declarative
state and never skips or repeats a stage. `fleet serve` calls tick() every few seconds on the leader worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fleet.db.desired import DesiredEntry
from fleet.db.store import FleetStore
from fleet.registry import DeviceRecord, TelemetrySample
from fleet.rollout import cohorts, transitions
from fleet.rollout.gates import Sample
from fleet.rollout.plan import Stage
from fleet.rollout.ports import DesiredPublisher
from fleet.rollout.selection import select
from fleet.rollout.store import Change, DeviceRow, RolloutRepository, RolloutRow
from fleet.rollout.verdict import Baseline, CanaryDevice, StageVerdict, judge_stage

log = logging.getLogger(__name__)
# Windows of a control device's history read for each verdict: the analysis window and the ones before it.
CONTROL_HISTORY_WINDOWS = 3


def as_sample(s: TelemetrySample) -> Sample:
    """The registry's telemetry sample as the gates read it."""
    return Sample(s.ts_ms, s.figures, s.class_counts)


def verdict_figures(verdict: StageVerdict) -> dict[str, Any]:
    """What the audit log keeps of a verdict: each gate's figures and each device's outcome."""
    return {
        "gates": [g.as_dict() for g in verdict.gates],
        "outcomes": {d.device_id: {"state": d.state, "kind": d.kind, "reason": d.reason} for d in verdict.devices},
    }


class RolloutController:
    """Drives every running rollout of one fleet; safe to construct anew after a crash."""

    def __init__(self, store: FleetStore, sender: object | None, desired: DesiredPublisher,
                 clock: Callable[[], int] | None = None) -> None:
        # `sender` (signed commands) is part of the wiring contract; desired state alone moves devices, since a
        # retained desired message also reaches a device that was offline when it was sent.
        self.store = store
        self.sender = sender
        self.desired = desired
        self.clock = clock or store.clock
        self.repo = RolloutRepository(store.engine, store.fleet)

    def tick(self) -> None:
        """One pass: publish what is owed, advance every running rollout by at most one decision, publish again."""
        self.flush()
        for row in self.repo.active():
            if row.state == "running":
                self._step(row)
        for row in self.repo.ended_with_pins():
            self._unpin(row)
        self.flush()

    def flush(self) -> int:
        """Publish every device's recorded-but-unsent desired state; returns how many were published."""
        sent = 0
        for row in self.repo.group_unsent():
            self.store.desired.set(DesiredEntry("group", row.group, row.model, row.version, rollout_id=row.id,
                                                set_ms=self.clock()))
            self.repo.mark_group_sent(row.id)
        for row, dev in self.repo.unsent():
            if dev.want_action == "set" and dev.want_version is not None:
                self.store.desired.set(DesiredEntry("device", dev.device_id, row.model, dev.want_version,
                                                    allow_downgrade=dev.want_downgrade, rollout_id=row.id,
                                                    set_ms=self.clock()))
            else:
                self.store.desired.clear("device", dev.device_id)
            self.desired.publish_device(dev.device_id)
            self.repo.mark_sent(row.id, dev.device_id, dev.want_serial)
            sent += 1
        return sent

    def _unpin(self, row: RolloutRow) -> None:
        """Lift the rollback's override of each device that runs its prior version again (and had none before)."""
        change = Change()
        for d in self.repo.devices(row.id):
            if d.state not in ("rolled_back", "failed") or d.want_action != "set" or d.prior_override or d.unsent:
                continue
            rec = self.store.devices.get(d.device_id)
            if rec is not None and rec.model_version == d.want_version:
                more = {"state": "restored"} if d.state == "rolled_back" else {}
                change.want(d.device_id, "clear", None, False, d.want_serial + 1, **more)
        self.repo.apply(row, change, self.clock())

    def _record(self, device_id: str, members: Mapping[str, DeviceRecord]) -> DeviceRecord | None:
        rec = members.get(device_id)
        if rec is None:
            raw = self.store.devices.get(device_id)
            rec = raw.with_status_at(self.clock()) if raw is not None else None
        return rec

    def _prior(self, row: RolloutRow, rec: DeviceRecord) -> tuple[int | None, bool]:
        """What the device should run when this rollout is undone (its override, its group's, or what it ran),
        and whether that was an override of its own."""
        ran = rec.model_version if rec.model_name in (None, row.model) else None
        own = self.store.desired.get("device", rec.device_id)
        if own is not None and own.model == row.model:
            return (own.version if own.version is not None else ran), True  # a channel: what it ran from it
        group = self.store.desired.get("group", row.group)
        if group is not None and group.model == row.model:
            return (group.version if group.version is not None else ran), False
        return ran, False

    def _assign(self, row: RolloutRow, stage: Stage, members: Mapping[str, DeviceRecord],
                assigned: Mapping[str, DeviceRow], now: int) -> Change:
        change = Change()
        for d in assigned.values():
            rec = self._record(d.device_id, members)
            if d.state == "pending" and rec is not None and rec.model_version == row.version:
                change.device_updates[d.device_id] = {"state": "updated", "converged_ms": now}
        everyone = stage.percent >= 100
        eligible = [r.device_id for r in members.values() if everyone or r.status == "online"]
        kept = [d for d in assigned if d in members]
        added = select(row.id, [d for d in eligible if d not in assigned], len(members), stage.percent, kept)
        for device_id in added:
            rec = members[device_id]
            on_it = rec.model_version == row.version
            prior, own = self._prior(row, rec)
            change.new_devices.append({
                "device_id": device_id, "stage_index": row.stage_index, "assigned_ms": now,
                "prior_version": prior, "prior_override": own, "restarts_base": rec.restarts,
                "converged_ms": now if on_it else None, "state": "updated" if on_it else "pending",
                "fail_kind": None, "reason": "", "want_action": "set", "want_version": row.version,
                "want_downgrade": False, "want_serial": 1, "sent_serial": 0,
            })
        if added:
            stage_name = stage.name
            change.event("assign", row.stage_index, "controller",
                         f"stage {stage_name}: {len(added)} devices get version {row.version}",
                         {"devices": added, "group_size": len(members)})
        return change

    def _canaries(self, row: RolloutRow, stage: Stage, assigned: list[DeviceRow],
                  members: Mapping[str, DeviceRecord], now: int) -> list[CanaryDevice]:
        out = []
        for d in assigned:
            if d.state == "rolled_back":
                continue
            rec = self._record(d.device_id, members)
            # From one window before assignment: the last reading before it is the reject counter's baseline.
            since = d.assigned_ms - int(stage.window_s * 1000)
            samples = self.store.telemetry_window(d.device_id, since, now + 1)
            out.append(CanaryDevice(
                device_id=d.device_id, assigned_ms=d.assigned_ms, converged_ms=d.converged_ms,
                reported_version=rec.model_version if rec else None, online=rec is not None and rec.status == "online",
                restarts=max(0, (rec.restarts if rec else 0) - d.restarts_base),
                samples=tuple(as_sample(s) for s in samples),
                failed_kind=d.fail_kind if d.state == "failed" else None,  # type: ignore[arg-type]
                failed_reason=d.reason,
            ))
        return out

    def _control(self, row: RolloutRow, stage: Stage, members: Mapping[str, DeviceRecord],
                 assigned: Mapping[str, DeviceRow], now: int) -> dict[str, tuple[Sample, ...]]:
        """Control devices' samples over the window and the ones before it, so the verdict can tell whether a
        device's reports are consistent over time."""
        since = now - int(stage.window_s * 1000) * CONTROL_HISTORY_WINDOWS
        out = {}
        for rec in members.values():
            if rec.device_id in assigned or rec.status != "online" or rec.model_version == row.version:
                continue
            samples = [as_sample(s) for s in self.store.telemetry_window(rec.device_id, since, now + 1)]
            out[rec.device_id] = tuple(s for s in samples if s.figures.get("model_version") != row.version)
        return out

    def _step(self, row: RolloutRow) -> None:
        now = self.clock()
        stage = row.plan.stages[row.stage_index]
        rule = cohorts.trusts_device_groups(row.baseline)
        members = {r.device_id: r for r in cohorts.members(self.store.list_devices(), row.group, rule)}
        assigned = {d.device_id: d for d in self.repo.devices(row.id)}
        change = self._assign(row, stage, members, assigned, now)
        if not change.empty():
            if not self.repo.apply(row, change, now):
                return  # an operator command got in first; judge from fresh rows next tick
            row = self.repo.get(row.id)
            assigned = {d.device_id: d for d in self.repo.devices(row.id)}
        if now < row.next_analysis_ms:
            return
        verdict = judge_stage(
            stage, row.version, self._canaries(row, stage, list(assigned.values()), members, now),
            self._control(row, stage, members, assigned, now),
            Baseline(row.baseline.get("figures", {}), row.baseline.get("class_counts", {}),
                     row.baseline.get("score_bins", {})),
            row.stage_started_ms, row.deadline_ms, now,
        )
        self._decide(row, stage, verdict, assigned, now)

    def _decide(self, row: RolloutRow, stage: Stage, verdict: StageVerdict, assigned: Mapping[str, DeviceRow],
                now: int) -> None:
        change = Change()
        change.rollout.update(last_decision=verdict.decision, last_reason=verdict.reason,
                              last_gates=[g.as_dict() for g in verdict.gates],
                              next_analysis_ms=now + int(stage.analysis_interval_s * 1000))
        devices = list(assigned.values())
        for outcome in verdict.devices:
            stored = assigned[outcome.device_id]
            if outcome.state == "failed" and stored.state != "failed":
                more = {"state": "failed", "fail_kind": outcome.kind, "reason": outcome.reason}
                if outcome.kind in transitions.RESTORE_KINDS:
                    transitions.restore(change, stored, **more)
                else:
                    change.device_updates[outcome.device_id] = more
                change.event("device-failed", row.stage_index, "controller", f"{outcome.device_id}: {outcome.reason}",
                             {"kind": outcome.kind})
        figures = verdict_figures(verdict)
        decision: str = verdict.decision
        if decision == "deadline":
            decision = "fail" if stage.on_deadline == "fail" else "pause"
        if decision == "pass":
            transitions.advance(change, row, devices, now, "controller", verdict.reason, figures)
        elif decision == "fail":
            transitions.roll_back(change, row, devices, now, "controller", verdict.reason, figures)
        elif decision == "pause":
            transitions.pause(change, row, "controller", verdict.reason, figures)
        if self.repo.apply(row, change, now) and decision != "hold":
            log.info("rollout %s: %s at stage %s: %s", row.id, decision, stage.name, verdict.reason)
