"""FleetReader and FleetActions over the control plane's own repositories (fleet.db, fleet.control, fleet.rollout).

The registry rows come from the database; the last telemetry figures and the results come from the web app's own
MQTT feed (dashboards.web.mqtt_feed), so the table is live within one batch of a message arriving. Each fleet error
becomes the DashboardError a user reads, and nothing changes when one is raised.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text, insert, select

from dashboards.errors import ActionRefused, BadRequest, DashboardError, UnknownTarget
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.finite import finite, finite_figures
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
from fleet.command_sender import CommandSender
from fleet.control import FleetControl
from fleet.db.device_changes import Version, read_changes
from fleet.db.store import FleetStore
from fleet.desired import desired_for
from fleet.device_removal import Removal, clear_hint, clear_retained, retained_topics
from fleet.errors import (
    EmptyGroupError,
    FleetError,
    RolloutConflictError,
    RolloutStateError,
    UnknownDeviceError,
    UnknownRolloutError,
)
from fleet.registry import DeviceRecord, effective_status
from fleet.rollout import cohorts
from fleet.rollout.controller import as_sample
from fleet.rollout.gates import device_figure
from fleet.rollout.operations import RolloutOperations
from fleet.rollout.plan import MetricGate, RolloutPlan
from fleet.rollout.store import DeviceRow as RolloutDevice
from fleet.rollout.store import RolloutRow

RAW_RECENT_MS = 10 * 60 * 1000  # the device page reads raw samples this far back, downsampled history before
PLOT_DEVICES = 200  # per cohort, the gate plots read at most this many devices' windows

# The web app's audit log lives in the control plane's database, in a table of its own.
audit_metadata = MetaData()
web_audit = Table(
    "web_audit", audit_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("fleet", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(200), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=False),
)


@contextmanager
def _as_dashboard_errors() -> Iterator[None]:
    """fleet/ errors as the web app's: unknown -> 404, conflicting state -> 409, the rest -> 400."""
    try:
        yield
    except (UnknownDeviceError, UnknownRolloutError) as exc:
        raise UnknownTarget(str(exc)) from exc
    except (RolloutConflictError, RolloutStateError) as exc:
        raise ActionRefused(str(exc)) from exc
    except (EmptyGroupError, FleetError, ValueError) as exc:
        raise BadRequest(str(exc)) from exc


def _count(rec: DeviceRecord, name: str) -> int:
    """A per-device refusal counter of the registry record (0 where this fleet/ version keeps none)."""
    value = getattr(rec, name, 0)
    if isinstance(value, dict):  # counted per reason
        value = sum(v for v in value.values() if isinstance(v, int))
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(rec: DeviceRecord, name: str) -> str | None:
    """A text field of the registry record, bounded (None where this fleet/ version keeps none)."""
    value = getattr(rec, name, None)
    return value[:200] if isinstance(value, str) else None


def _row(rec: DeviceRecord, figures: dict[str, float], desired: int | None, feed_refused: int = 0,
         cohort: tuple[str, str] | None = None, status: str | None = None,
         desired_channel: str | None = None) -> DeviceRow:
    return DeviceRow(
        device_id=rec.device_id, fleet=rec.fleet, groups=list(rec.groups),
        status=status or rec.status,  # type: ignore[arg-type]
        model_name=rec.model_name, model_version=rec.model_version, variant=rec.model_variant,
        backend=rec.model_backend, desired_version=desired, desired_channel=desired_channel,
        follow=_text(rec, "follow"), channel=_text(rec, "channel"), fps=figures.get("fps"),
        e2e_ms_p95=figures.get("e2e_ms_p95"), cpu_pct=figures.get("cpu_pct"), rss_mb=figures.get("rss_mb"),
        temp_c=figures.get("temp_c"), package_rejects=figures.get("package_rejects"),
        objects_per_min=objects_per_min(figures),
        last_seen_ms=rec.last_seen_ms, agent_version=rec.agent_version, restarts=rec.restarts,
        degraded=dict(rec.degraded), refused=max(_count(rec, "refused"), feed_refused), shed=_count(rec, "shed"),
        last_refused=_text(rec, "last_refused"), cohort=cohort[0] if cohort else None,  # type: ignore[arg-type]
        rollout_id=cohort[1] if cohort else None,
    )


def _stages(row: RolloutRow, devices: Sequence[RolloutDevice]) -> list[StageView]:
    per_stage = Counter(d.stage_index for d in devices)
    states: dict[int, Counter[str]] = {}
    for d in devices:
        states.setdefault(d.stage_index, Counter())[d.state] += 1
    finished_ok = row.state == "completed"
    out = []
    cumulative = 0
    for i, stage in enumerate(row.plan.stages):
        cumulative += per_stage.get(i, 0)
        if finished_ok or i < row.stage_index:
            state = "passed"
        elif i == row.stage_index:
            state = "running" if row.active else ("failed" if row.state in ("rolled_back", "aborted", "failed")
                                                  else "passed")
        else:
            state = "pending"
        out.append(StageView(index=i, share=stage.percent / 100, devices=cumulative, state=state,  # type: ignore[arg-type]
                             name=stage.name, by_state=dict(sorted(states.get(i, Counter()).items()))))
    return out


def _gates(row: RolloutRow) -> list[GateFigure]:
    stage = row.plan.stages[row.stage_index]
    by_label = {g.label: g for g in stage.gates}
    out = []
    for g in row.last_gates:
        plan_gate: Any = by_label.get(str(g.get("gate")))
        status = g.get("status")
        out.append(GateFigure(
            name=str(g.get("gate")), metric=str(getattr(plan_gate, "metric", g.get("gate"))),
            op=str(getattr(plan_gate, "op", "")), threshold=float(g.get("threshold") or 0.0),
            canary=finite(g.get("canary")), control=finite(g.get("control")),
            verdict=status if status in ("pass", "fail", "hold") else None, detail=str(g.get("detail") or "")[:2000],
        ))
    if not out:  # not analysed yet: show the plan's gates with no data
        for pg in stage.gates:
            out.append(GateFigure(name=pg.label, metric=str(getattr(pg, "metric", pg.label)),
                                  op=str(getattr(pg, "op", "")), threshold=float(getattr(pg, "threshold", 0.0))))
    return out


def _values(windows: Mapping[str, Sequence[Any]], ids: Sequence[str], gate: MetricGate) -> list[float]:
    """The devices' own figures for a gate (those short of samples left out), finite only."""
    out = []
    for d in ids:
        v = finite(device_figure(windows.get(d, ()), gate))
        if isinstance(v, float | int):
            out.append(float(v))
    return out


class FleetAdapter:
    """The web app's reads and actions on one fleet's control plane."""

    def __init__(self, store: FleetStore, control: FleetControl | None, sender: CommandSender | None,
                 events: EventBuffer, figures: FigureBuffer, plan: RolloutPlan | None = None,
                 trust_device_groups: bool = False) -> None:
        self.store = store
        self.plan = plan  # rollouts started from the page use it; None: the control plane's default plan
        self.control = control
        self.sender = sender
        # As the fleet CLI: controller.trust_device_groups decides whether a device's own group claims count.
        self.rollout_ops = RolloutOperations(store, trust_device_groups=trust_device_groups)
        self.events_buffer = events
        self.figures = figures
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._held: dict[str, tuple[Version, DeviceRecord]] = {}  # records as last read, with their version
        self._rows: dict[str, tuple[tuple[Any, ...], DeviceRow]] = {}  # rows as last built, with their inputs
        self._plots: dict[str, tuple[int, list[GateFigure]]] = {}  # rollout id -> (rev, gates with their plots)
        audit_metadata.create_all(store.engine)

    # ---- reads -------------------------------------------------------------------------------------------------
    def fleet_name(self) -> str:
        return self.store.fleet

    def devices(self) -> list[DeviceRow]:
        now = self.store.clock()
        records = self._records()
        entries = self.store.desired.all()
        latest = self.figures.latest()
        refused = self.figures.refused()
        membership = self._cohorts(records)
        out = []
        with self._lock:
            for rec in records:
                dev = rec.device_id
                entry = desired_for(rec, entries)
                inputs = (rec, effective_status(rec, now), latest.get(dev, {}), entry.version if entry else None,
                          refused.get(dev, 0), membership.get(dev), entry.channel if entry else None)
                held = self._rows.get(dev)
                if held is None or held[0] != inputs:  # a row is rebuilt only when what it shows moved
                    held = (inputs, _row(rec, inputs[2], inputs[3], inputs[4], inputs[5], inputs[1], inputs[6]))
                    self._rows[dev] = held
                out.append(held[1])
            for dev in [d for d in self._rows if d not in self._held]:
                del self._rows[dev]
        return out

    def _records(self) -> list[DeviceRecord]:
        """Every device's record by id, read again only where its row or group assignments changed."""
        with self._read_lock:
            changes = read_changes(self.store.engine, self.store.fleet, {k: v[0] for k, v in self._held.items()})
            for rec in changes.changed:
                self._held[rec.device_id] = (changes.versions[rec.device_id], rec)
            for dev in changes.gone:
                self._held.pop(dev, None)
            return [self._held[dev][1] for dev in sorted(changes.versions) if dev in self._held]

    def _cohorts(self, records: Sequence[DeviceRecord]) -> dict[str, tuple[str, str]]:
        """Each device in a running or paused rollout: (canary or control, rollout id); canaries are the devices
        the rollout selected, control the rest of its group's cohort members (by the rollout's own cohort rule)."""
        out: dict[str, tuple[str, str]] = {}
        for row in self.rollout_ops.repo.active():
            selected = {d.device_id for d in self.rollout_ops.repo.devices(row.id) if d.state != "rolled_back"}
            rule = cohorts.trusts_device_groups(row.baseline)
            for rec in cohorts.members(records, row.group, rule):
                out.setdefault(rec.device_id, ("canary" if rec.device_id in selected else "control", row.id))
        return out

    def device(self, device_id: str) -> DeviceDetail | None:
        rec = self.store.devices.get(device_id)
        if rec is None:
            return None
        rec = rec.with_status_at(self.store.clock())
        entry = desired_for(rec, self.store.desired.all())
        state = {"agent_version": rec.agent_version, "boot_id": rec.boot_id, "config_digest": rec.config_digest,
                 "model": {"name": rec.model_name, "version": rec.model_version, "variant": rec.model_variant,
                           "precision": rec.model_precision, "backend": rec.model_backend,
                           "streams": list(rec.model_streams)},
                 "groups": list(rec.groups), "hardware": rec.hardware, "degraded": rec.degraded,
                 "unsigned_commands": rec.unsigned_commands, "telemetry_interval_s": rec.telemetry_interval_s,
                 "follow": _text(rec, "follow"), "channel": _text(rec, "channel"),
                 "models": list(rec.models)}  # finite() below copies each model: the record's stay untouched
        row = _row(rec, self.figures.latest().get(device_id, {}), entry.version if entry else None,
                   self.figures.refused().get(device_id, 0), self._cohorts([rec]).get(device_id),
                   desired_channel=entry.channel if entry else None)
        return DeviceDetail(row=row,
                            boot_id=rec.boot_id, hardware=finite(dict(rec.hardware)), config_digest=rec.config_digest,
                            state=finite(state))

    def latest_figures(self) -> dict[str, dict[str, float]]:
        return self.figures.latest()

    def command(self, device_id: str, request_id: str) -> CommandView | None:
        rec = self.store.commands.get(request_id)
        if rec is None or rec.device_id != device_id:
            return None
        return command_view(rec.request_id, rec.device_id, rec.name, rec.sent_ms, rec.reply_ok, rec.reply_error,
                            rec.reply_ms, self.store.clock())

    def history(self, device_id: str, since_ms: int, until_ms: int) -> list[Sample]:
        raw_from = max(since_ms, until_ms - RAW_RECENT_MS)
        raw = self.store.telemetry_window(device_id, raw_from, until_ms + 1)
        first_raw = raw[0].ts_ms if raw else until_ms + 1
        older = [Sample(ts_ms=b, values=finite_figures(f))
                 for b, _, f in self.store.telemetry.history(device_id, since_ms, min(raw_from, first_raw))]
        return older + [Sample(ts_ms=s.ts_ms, values=finite_figures(s.figures)) for s in raw]

    def events(self, device_id: str | None, since_ms: int, limit: int, collapsed: bool = False) -> list[EventRow]:
        return self.events_buffer.events(device_id, since_ms, limit, collapsed)

    def _view(self, row: RolloutRow, plots: bool = False) -> RolloutView:
        devices = self.rollout_ops.repo.devices(row.id)
        events = self.rollout_ops.repo.events(row.id)
        priors = Counter(d.prior_version for d in devices if d.prior_version is not None)
        gates = _gates(row)
        if plots:
            gates = self._plotted(row, devices, gates)
        return RolloutView(
            rollout_id=row.id, group=row.group, model=row.model, version=row.version,
            from_version=priors.most_common(1)[0][0] if priors else None, state=row.state, stage=row.stage_index,
            stages=_stages(row, devices), last_reason=row.last_reason[:4000],
            devices_by_state=dict(sorted(Counter(d.state for d in devices).items())), gates=gates,
            decisions=[Decision(ts_ms=e.ts_ms, stage=e.stage_index, action=e.kind, reason=e.reason,
                                by=None if e.actor == "controller" else e.actor) for e in events],
            started_ms=row.created_ms, updated_ms=row.updated_ms,
        )

    def rollouts(self) -> list[RolloutView]:
        return [self._view(r) for r in self.rollout_ops.repo.latest(limit=20)]

    def _plotted(self, row: RolloutRow, devices: Sequence[RolloutDevice], gates: list[GateFigure]
                 ) -> list[GateFigure]:
        """The gate plots of a rollout as of its revision: read again only when the controller decided again, so
        a page refreshing its rollout does not read a large group's windows each time."""
        with self._lock:
            cached = self._plots.get(row.id)
        if cached is not None and cached[0] == row.rev:
            return cached[1]
        plotted = self._gate_values(row, devices, gates)
        with self._lock:
            if len(self._plots) >= 16:
                self._plots.clear()
            self._plots[row.id] = (row.rev, plotted)
        return plotted

    def _gate_values(self, row: RolloutRow, devices: Sequence[RolloutDevice], gates: list[GateFigure]
                     ) -> list[GateFigure]:
        """Each metric gate's per-device figures over the stage's window, canary against control, for its plot."""
        stage = row.plan.stages[row.stage_index]
        metric_gates = {g.label: g for g in stage.gates if isinstance(g, MetricGate)}
        if not metric_gates:
            return gates
        now = self.store.clock()
        since = now - int(stage.window_s * 1000)
        canary = [d.device_id for d in devices if d.state != "rolled_back"][:PLOT_DEVICES]
        rule = cohorts.trusts_device_groups(row.baseline)
        chosen = set(canary)
        control = [r.device_id for r in cohorts.members(self.store.list_devices(group=row.group), row.group, rule)
                   if r.device_id not in chosen and r.status == "online"][:PLOT_DEVICES]
        windows = {d: [as_sample(s) for s in self.store.telemetry_window(d, since, now + 1)]
                   for d in (*canary, *control)}
        out = []
        for g in gates:
            plan_gate = metric_gates.get(g.name)
            if plan_gate is None:
                out.append(g)
                continue
            values = _values(windows, canary, plan_gate), _values(windows, control, plan_gate)
            out.append(g.model_copy(update={"canary_values": values[0], "control_values": values[1]}))
        return out

    def rollout(self, rollout_id: str) -> RolloutView | None:
        try:
            return self._view(self.rollout_ops.repo.get(rollout_id), plots=True)
        except UnknownRolloutError:
            return None

    def audit_log(self, limit: int) -> list[AuditEntry]:
        a = web_audit.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(web_audit).where(a.fleet == self.store.fleet).order_by(a.id.desc())
                                .limit(limit)).all()
        return [AuditEntry(ts_ms=r.ts_ms, user=r.user_name, action=r.action, target=r.target, ok=r.ok,
                           detail=r.detail) for r in rows]

    # ---- actions -----------------------------------------------------------------------------------------------
    def _need_sender(self) -> CommandSender:
        if self.sender is None:
            raise ActionRefused("this control plane has no command key (commands.key): it observes only")
        return self.sender

    def _need_control(self) -> FleetControl:
        if self.control is None:
            raise ActionRefused("this control plane has no command key (commands.key): it observes only")
        return self.control

    def ping(self, device_id: str) -> Sent:
        with _as_dashboard_errors():
            self.store.device(device_id)
            rec = self._need_sender().send(device_id, "ping", {})
        return Sent(message=f"signed ping {rec.request_id} sent to {device_id}", request_id=rec.request_id)

    def deploy(self, device_id: str, version: int) -> str:
        with _as_dashboard_errors():
            rec = self.store.device(device_id)
            model = rec.model_name
            if model is None:
                raise BadRequest(f"{device_id} reports no model yet: cannot tell which model to deploy")
            result = self._need_control().deploy(model, version, device=device_id)
        return f"{device_id}: desired {result.model} v{result.version}, signed deploy sent"

    def rollback(self, device_id: str) -> str:
        with _as_dashboard_errors():
            result = self._need_control().rollback(device=device_id)
        return f"{device_id}: back to desired {result.model} v{result.version}, signed deploy sent"

    def remove(self, device_id: str) -> str:
        with _as_dashboard_errors():
            if not self.store.remove_device(device_id):
                raise UnknownTarget(f"no device {device_id!r} in fleet {self.store.fleet!r}")
        if self.sender is None:
            return (f"{device_id} removed from the registry; its retained topics stay on the broker (this control "
                    "plane observes only) and are ignored until it publishes again; "
                    + clear_hint(retained_topics(self.store.fleet, device_id)))
        try:
            cleared, kept = clear_retained(self.sender.publisher, self.store.fleet, device_id)
        except FleetError as exc:
            return (f"{device_id} removed from the registry, but clearing its retained topics failed ({exc}): they "
                    "stay on the broker and are ignored until it publishes again")
        if kept:
            return (f"{device_id} removed from the registry and history; "
                    + Removal(device_id, True, cleared, kept).summary())
        return f"{device_id} removed: registry, history and retained topics; it reappears if it publishes again"

    def start_rollout(self, model: str, version: int, group: str) -> str:
        control = self._need_control()

        def verified(name: str, v: int) -> None:
            control.packages.check(name, v)

        with _as_dashboard_errors():
            row = self.rollout_ops.start(model, version, group, self.plan, check_version=verified)
        return row.id

    def rollout_action(self, rollout_id: str, action: RolloutAction, user: str) -> str:
        reason = f"{action} by {user} from the web app"
        with _as_dashboard_errors():
            self.rollout_ops.repo.get(rollout_id)
            fn = {"pause": self.rollout_ops.pause, "resume": self.rollout_ops.resume,
                  "promote": self.rollout_ops.promote, "abort": self.rollout_ops.abort}[action]
            row = fn(rollout_id, reason)
        return f"rollout {row.id}: {action} done, now {row.state} at stage {row.stage_index + 1}"

    def audit(self, user: str, action: str, target: str, ok: bool, detail: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(insert(web_audit).values(fleet=self.store.fleet, ts_ms=self.store.clock(), user_name=user,
                                                  action=action, target=target[:200], ok=ok, detail=detail[:2000]))


__all__ = ["DashboardError", "FleetAdapter"]
