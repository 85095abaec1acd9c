"""An in-memory fleet implementing the web app's FleetReader and FleetActions, driven by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dashboards.errors import ActionRefused, BadRequest, UnknownTarget
from dashboards.web.objects import objects_per_min
from dashboards.web.ports import (
    AuditEntry,
    CommandView,
    Decision,
    DeviceDetail,
    DeviceRow,
    EventRow,
    GateFigure,
    RolloutAction,
    RolloutView,
    Sample,
    Sent,
    StageView,
    command_view,
)

# A device goes stale a minute after its last report: long enough that a loaded machine never greys a row mid-test
# (tests that need stale rows freeze the clock instead).
STALE_AFTER_MS = 60_000


class FakeFleet:
    """Devices, history, events, rollouts and an audit log in memory; time from `clock_ms`."""

    def __init__(self, fleet: str = "lab", clock_ms: Callable[[], int] | None = None) -> None:
        self.fleet = fleet
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        self._rows: dict[str, DeviceRow] = {}
        self._reported: dict[str, str] = {}
        self._figures: dict[str, dict[str, float]] = {}
        self._history: dict[str, list[Sample]] = {}
        self._events: list[EventRow] = []
        self._rollouts: dict[str, RolloutView] = {}
        self.audits: list[AuditEntry] = []
        self.sent: list[tuple[str, str, object]] = []
        self.versions = {1, 2, 3}
        self.silent: set[str] = set()
        self._commands: dict[str, tuple[str, int, int | None]] = {}

    # ---- driving it --------------------------------------------------------------------------------------------
    def add_device(self, device_id: str, groups: list[str] | None = None, version: int = 1) -> None:
        """A device appears online."""
        with self._lock:
            self._rows[device_id] = DeviceRow(
                device_id=device_id, fleet=self.fleet, groups=groups or ["lab"], status="online", model_name="digits",
                model_version=version, variant="model.int8.onnx", backend="onnxruntime",
                last_seen_ms=self.clock_ms(), agent_version="0.1.0",
            )
            self._reported[device_id] = "online"
            self._history[device_id] = []

    def telemetry(self, device_id: str, values: dict[str, float], ts_ms: int | None = None) -> None:
        """One telemetry message arrives."""
        ts = ts_ms if ts_ms is not None else self.clock_ms()
        with self._lock:
            row = self._rows[device_id]
            self._rows[device_id] = row.model_copy(update={
                "last_seen_ms": ts, "fps": values.get("fps"), "e2e_ms_p95": values.get("e2e_ms_p95"),
                "cpu_pct": values.get("cpu_pct"), "temp_c": values.get("temp_c"), "rss_mb": values.get("rss_mb"),
                "package_rejects": values.get("package_rejects"), "objects_per_min": objects_per_min(values),
            })
            self._figures[device_id] = dict(values)
            self._history[device_id].append(Sample(ts_ms=ts, values=dict(values)))

    def misbehave(self, device_id: str, refused: int = 0, shed: int = 0) -> None:
        """The control plane refused or shed some of this device's messages."""
        with self._lock:
            self._rows[device_id] = self._rows[device_id].model_copy(update={"refused": refused, "shed": shed})

    def desire(self, device_id: str, version: int | None) -> None:
        """The control plane wants the device on this version (None: no desired state)."""
        with self._lock:
            self._rows[device_id] = self._rows[device_id].model_copy(update={"desired_version": version})

    def follows(self, device_id: str, follow: str | None, channel: str | None,
                desired_channel: str | None = None) -> None:
        """The device's state says what moves it (follow) and which channel it reads; the control plane may want it
        on a channel instead of a version."""
        with self._lock:
            self._rows[device_id] = self._rows[device_id].model_copy(update={
                "follow": follow, "channel": channel, "desired_channel": desired_channel})

    def cohort(self, device_id: str, cohort: str | None, rollout_id: str | None = None) -> None:
        """The device is a canary or a control member of a rollout (None: in none)."""
        with self._lock:
            self._rows[device_id] = self._rows[device_id].model_copy(update={"cohort": cohort,
                                                                             "rollout_id": rollout_id})

    def set_status(self, device_id: str, status: str) -> None:
        """The retained status changes (offline: the Last Will)."""
        with self._lock:
            self._reported[device_id] = status

    def event(self, device_id: str, label: str, score: float) -> None:
        """The device publishes one result."""
        with self._lock:
            self._events.append(EventRow(device_id=device_id, ts_ms=self.clock_ms(), type="new", label=label,
                                         score=score, frame=len(self._events), model_version=1))

    def advance_rollout(self, rollout_id: str, canary: float, control: float) -> None:
        """The controller evaluates the gates and, when they pass, moves to the next stage."""
        with self._lock:
            r = self._rollouts[rollout_id]
            if r.state != "running":
                return
            gates = [g.model_copy(update={"canary": canary, "control": control, "verdict": "pass"}) for g in r.gates]
            stage = min(r.stage + 1, len(r.stages) - 1)
            done = r.stage == len(r.stages) - 1
            by_state = [dict(s.by_state) for s in r.stages]
            by_state[r.stage] = {"converged": r.stages[r.stage].devices}
            if not done:
                by_state[stage] = {"pending": 1, "installing": 1}
            stages = [s.model_copy(update={"state": "passed" if s.index < stage or done else
                                           "running" if s.index == stage else "pending",
                                           "by_state": by_state[s.index]}) for s in r.stages]
            reason = (f"every gate passed: e2e p95 {canary:.1f} ms vs control {control:.1f} ms; "
                      + "; ".join(f"device cam-{i} within the effect size of its control" for i in range(12)))
            decision = Decision(ts_ms=self.clock_ms(), stage=r.stage, action="complete" if done else "advance",
                                reason=reason)
            gates = [g.model_copy(update={"canary_values": [canary - 0.2, canary, canary + 0.3],
                                          "control_values": [control - 0.1, control, control + 0.1, control + 0.4]})
                     for g in gates]
            self._rollouts[rollout_id] = r.model_copy(update={
                "stage": stage, "stages": stages, "gates": gates, "state": "completed" if done else "running",
                "decisions": [*r.decisions, decision], "updated_ms": self.clock_ms(), "last_reason": reason,
                "devices_by_state": {"updated": stages[stage].devices, "pending": 10 - stages[stage].devices},
            })

    # ---- FleetReader -------------------------------------------------------------------------------------------
    def fleet_name(self) -> str:
        return self.fleet

    def _now_row(self, row: DeviceRow, now: int) -> DeviceRow:
        reported = self._reported[row.device_id]
        status = reported
        if reported == "online" and (row.last_seen_ms is None or now - row.last_seen_ms > STALE_AFTER_MS):
            status = "stale"
        return row.model_copy(update={"status": status}) if status != row.status else row

    def devices(self) -> list[DeviceRow]:
        now = self.clock_ms()
        with self._lock:
            return [self._now_row(r, now) for r in self._rows.values()]

    def device(self, device_id: str) -> DeviceDetail | None:
        with self._lock:
            row = self._rows.get(device_id)
            if row is None:
                return None
            row = self._now_row(row, self.clock_ms())
        return DeviceDetail(row=row, boot_id="b1", hardware={"cpu": "fake"}, config_digest="abc123",
                            state={"device_id": device_id, "model": {"name": "digits", "version": row.model_version}})

    def latest_figures(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._figures.items()}

    def command(self, device_id: str, request_id: str) -> CommandView | None:
        with self._lock:
            found = self._commands.get(request_id)
        if found is None or found[0] != device_id:
            return None
        return command_view(request_id, device_id, "ping", found[1], True if found[2] else None, None, found[2],
                            self.clock_ms())

    def history(self, device_id: str, since_ms: int, until_ms: int) -> list[Sample]:
        with self._lock:
            return [s for s in self._history.get(device_id, []) if since_ms <= s.ts_ms <= until_ms]

    def events(self, device_id: str | None, since_ms: int, limit: int, collapsed: bool = False) -> list[EventRow]:
        with self._lock:
            hits = [e for e in self._events if (device_id is None or e.device_id == device_id) and e.ts_ms >= since_ms]
        return list(reversed(hits))[:limit]

    def rollouts(self) -> list[RolloutView]:
        with self._lock:
            return sorted(self._rollouts.values(), key=lambda r: r.started_ms, reverse=True)

    def rollout(self, rollout_id: str) -> RolloutView | None:
        with self._lock:
            return self._rollouts.get(rollout_id)

    def audit_log(self, limit: int) -> list[AuditEntry]:
        with self._lock:
            return list(reversed(self.audits))[:limit]

    # ---- FleetActions ------------------------------------------------------------------------------------------
    def _check_version(self, version: int) -> None:
        if version not in self.versions:
            raise BadRequest(f"model digits has no version {version} in the store (has {sorted(self.versions)})")

    def ping(self, device_id: str) -> Sent:
        self.sent.append(("ping", device_id, None))
        rid = f"p{len(self.sent)}"
        now = self.clock_ms()
        with self._lock:
            # A device in `silent` never answers; the others reply 5 ms later.
            self._commands[rid] = (device_id, now, None if device_id in self.silent else now + 5)
        return Sent(message=f"ping sent to {device_id}", request_id=rid)

    def deploy(self, device_id: str, version: int) -> str:
        self._check_version(version)
        self.sent.append(("deploy", device_id, version))
        return f"{device_id}: desired version set to {version}, deploy sent"

    def rollback(self, device_id: str) -> str:
        self.sent.append(("rollback", device_id, None))
        return f"rollback sent to {device_id}"

    def remove(self, device_id: str) -> str:
        with self._lock:
            if self._rows.pop(device_id, None) is None:
                raise UnknownTarget(f"no device {device_id!r}")
            self._reported.pop(device_id, None)
            self._figures.pop(device_id, None)
        self.sent.append(("remove", device_id, None))
        return f"{device_id} removed"

    def start_rollout(self, model: str, version: int, group: str) -> str:
        self._check_version(version)
        with self._lock:
            members = [r for r in self._rows.values() if group in r.groups]
            if not members:
                raise BadRequest(f"group {group!r} has no devices")
            if any(r.group == group and r.active for r in self._rollouts.values()):
                raise ActionRefused(f"group {group!r} already has a rollout running")
            rid = f"r{len(self._rollouts) + 1}"
            now = self.clock_ms()
            n = len(members)
            stages = [StageView(index=i, share=s, devices=max(1, round(s * n)), name=name,
                                state="running" if i == 0 else "pending",
                                by_state={"pending": max(1, round(s * n))} if i == 0 else {})
                      for i, (name, s) in enumerate((("canary", 0.1), ("half", 0.5), ("all", 1.0)))]
            self._rollouts[rid] = RolloutView(
                rollout_id=rid, group=group, model=model, version=version, from_version=1, state="running", stage=0,
                stages=stages, devices_by_state={"updated": 0, "pending": n},
                gates=[GateFigure(name="latency", metric="e2e_ms_p95", op="<=", threshold=1.2),
                       GateFigure(name="confidence", metric="conf_mean", op=">=", threshold=0.8)],
                decisions=[Decision(ts_ms=now, stage=0, action="start", reason="started from the web app")],
                started_ms=now, updated_ms=now,
            )
        return rid

    def rollout_action(self, rollout_id: str, action: RolloutAction, user: str) -> str:
        with self._lock:
            r = self._rollouts.get(rollout_id)
            if r is None:
                raise UnknownTarget(f"no rollout {rollout_id!r}")
            if not r.active:
                raise ActionRefused(
                    f"rollout {rollout_id} is {r.state}; {action} applies only to a running or paused one")
            if action == "pause" and r.state == "paused":
                raise ActionRefused(f"rollout {rollout_id} is already paused")
            if action == "resume" and r.state != "paused":
                raise ActionRefused(f"rollout {rollout_id} is not paused")
            state = {"pause": "paused", "resume": "running", "promote": r.state, "abort": "aborted"}[action]
            decision = Decision(ts_ms=self.clock_ms(), stage=r.stage, action=action, reason=f"{action} by {user}",
                                by=user)
            self._rollouts[rollout_id] = r.model_copy(update={
                "state": state, "decisions": [*r.decisions, decision], "updated_ms": self.clock_ms()})
        return f"rollout {rollout_id}: {action} done"

    def audit(self, user: str, action: str, target: str, ok: bool, detail: str) -> None:
        with self._lock:
            self.audits.append(AuditEntry(ts_ms=self.clock_ms(), user=user, action=action, target=target, ok=ok,
                                          detail=detail))
