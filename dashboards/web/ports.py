"""What the web app reads from and asks of the fleet control plane: view models and two small Protocols.

The app never touches the fleet's database or MQTT client directly; `dashboards.web.fleet_adapter` implements these
over fleet/'s repositories, and tests use a fake. Every action raises a `dashboards.errors.DashboardError` (unknown
target, refused in this state, bad input) and changes nothing when it does.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

DeviceStatus = Literal["online", "stopped", "offline", "stale", "unknown"]
RolloutAction = Literal["pause", "resume", "promote", "abort"]
# Rollout states in which pause/resume/promote/abort still mean something.
ACTIVE_ROLLOUT_STATES = frozenset({"running", "paused", "holding"})


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceRow(_View):
    """One line of the fleet table: what the registry knows of a device now."""

    device_id: str = Field(description="Device id (topic level 3).")
    fleet: str = Field(description="Fleet (topic level 2).")
    groups: list[str] = Field(default_factory=list, description="Groups from the agent's config and assignments.")
    status: DeviceStatus = Field(description="online/stopped/offline from the retained status; stale when silent.")
    model_name: str | None = Field(default=None, description="Served model name.")
    model_version: int | None = Field(default=None, description="Served model version.")
    variant: str | None = Field(default=None, description="Served variant file.")
    backend: str | None = Field(default=None, description="Inference backend.")
    desired_version: int | None = Field(default=None, description="Version the control plane wants it to serve.")
    desired_channel: str | None = Field(default=None, description="Instead of a version: the pointer channel the "
                                        "control plane wants it to follow.")
    follow: str | None = Field(default=None, description="What moves it to a new version, from its state payload: "
                               "'latest' (its channel's signed pointer) or 'desired' (only the fleet's desired state).")
    channel: str | None = Field(default=None, description="Pointer channel it follows, from its state payload.")
    fps: float | None = Field(default=None, description="Frames per second, last telemetry.")
    e2e_ms_p95: float | None = Field(default=None, description="End-to-end p95 latency (ms), last telemetry.")
    cpu_pct: float | None = Field(default=None, description="Agent CPU, % of one core, last telemetry.")
    rss_mb: float | None = Field(default=None, description="Agent resident memory (MiB), last telemetry.")
    temp_c: float | None = Field(default=None, description="Hottest thermal zone (°C), last telemetry.")
    package_rejects: float | None = Field(default=None, description="Packages refused since boot.")
    objects_per_min: float | None = Field(default=None, description="A detector's detections per minute (objects "
                                          "per frame x frame rate), last telemetry; None: it serves no detector.")
    last_seen_ms: int | None = Field(default=None, description="Unix ms of the last message from the device.")
    agent_version: str | None = Field(default=None, description="edgeferry version of the agent.")
    restarts: int = Field(default=0, description="Boot id changes seen.")
    degraded: dict[str, str] = Field(default_factory=dict, description="Components failing now.")
    refused: int = Field(default=0, description="Messages refused as malformed or out of range (registry's count, or "
                         "the web app's own when higher): a device sending them is misbehaving.")
    shed: int = Field(default=0, description="Messages shed because the device sent more than its fair share.")
    last_refused: str | None = Field(default=None, description="Why the registry refused its last bad message.")
    cohort: Literal["canary", "control"] | None = Field(
        default=None, description="In a running or paused rollout of one of its groups: canary (selected for the new "
                                  "version) or control (a member left on the old one); None otherwise.")
    rollout_id: str | None = Field(default=None, description="The rollout its cohort belongs to.")

class DeviceDetail(_View):
    """The device page's header: the row plus what the retained state payload says."""

    row: DeviceRow = Field(description="The fleet table's row.")
    boot_id: str | None = Field(default=None, description="Boot id of the running agent.")
    hardware: dict[str, Any] = Field(default_factory=dict, description="CPU, GPU and platform facts.")
    config_digest: str | None = Field(default=None, description="Digest of the agent's resolved config.")
    state: dict[str, Any] = Field(default_factory=dict, description="The last retained state payload as sent.")


class Sample(_View):
    """One point of a device's kept telemetry history."""

    ts_ms: int = Field(description="Unix ms of the sample (bucket start for downsampled history).")
    values: dict[str, float] = Field(description="Flat figures by metric name (shared.metrics).")


class EventRow(_View):
    """One result a device published on `events`."""

    device_id: str = Field(description="Device that sent it.")
    ts_ms: int = Field(description="Unix ms when produced.")
    type: str = Field(description="new/update/end/frame.")
    label: str | None = Field(default=None, description="Top-1 label.")
    score: float | None = Field(default=None, description="Top-1 confidence.")
    frame: int | None = Field(default=None, description="Frame index in the source.")
    model_version: int | None = Field(default=None, description="Model version that produced it.")
    count: int = Field(default=1, description="Results this row stands for (a run of update/frame rows, collapsed).")
    first_ts_ms: int | None = Field(default=None, description="Unix ms of the first result of a collapsed run.")


class Sent(_View):
    """A command handed to the broker; its reply is read with FleetReader.command."""

    message: str = Field(description="One line saying what was sent.")
    request_id: str = Field(description="Request id the device's reply carries.")


class CommandView(_View):
    """One command sent to a device and, once it came, the device's reply."""

    request_id: str = Field(description="Request id.")
    device_id: str = Field(description="Device it was sent to.")
    name: str = Field(description="Command name (ping, deploy, rollback, ...).")
    sent_ms: int = Field(description="Unix ms when sent.")
    state: Literal["waiting", "replied", "timed_out"] = Field(description="No reply yet, replied, or past its wait.")
    ok: bool | None = Field(default=None, description="The device's verdict, once it replied.")
    error: str | None = Field(default=None, description="The device's error line when it refused or failed.")
    reply_ms: int | None = Field(default=None, description="Unix ms when the reply arrived.")
    round_trip_ms: int | None = Field(default=None, description="reply_ms - sent_ms.")


REPLY_WAIT_MS = 15_000  # a command with no reply after this long is shown as timed out


def command_view(request_id: str, device_id: str, name: str, sent_ms: int, ok: bool | None, error: str | None,
                 reply_ms: int | None, now_ms: int) -> CommandView:
    """A logged command as the device page reads it: waiting, replied (with the round trip), or timed out."""
    if reply_ms is not None:
        return CommandView(request_id=request_id, device_id=device_id, name=name, sent_ms=sent_ms, state="replied",
                           ok=ok, error=error, reply_ms=reply_ms, round_trip_ms=max(0, reply_ms - sent_ms))
    state: Literal["waiting", "timed_out"] = "timed_out" if now_ms - sent_ms > REPLY_WAIT_MS else "waiting"
    return CommandView(request_id=request_id, device_id=device_id, name=name, sent_ms=sent_ms, state=state)


class GateFigure(_View):
    """One gate of the current stage: its figure for the canary and control cohorts against its threshold."""

    name: str = Field(description="Gate name from the plan.")
    metric: str = Field(description="Figure it reads (a shared.metrics name, or psi/shadow_agreement).")
    op: str = Field(description="Comparison that passes: <, <=, >, >=.")
    threshold: float = Field(description="Threshold the canary figure is compared to.")
    canary: float | None = Field(default=None, description="Canary cohort figure; None while there is no data.")
    control: float | None = Field(default=None, description="Control cohort figure; None while there is no data.")
    verdict: Literal["pass", "fail", "hold"] | None = Field(default=None, description="Last evaluation.")
    canary_values: list[float] = Field(default_factory=list, description="Per-device figures of the canary cohort "
                                       "over the stage's window (at most a few hundred), for the distribution plot.")
    control_values: list[float] = Field(default_factory=list, description="The same for the control cohort.")
    detail: str = Field(default="", description="Why the gate decided as it did, as the controller wrote it.")


class StageView(_View):
    """One stage of a rollout plan and how far it got."""

    index: int = Field(description="0-based stage number.")
    share: float = Field(description="Share of the group this stage covers (0-1].")
    devices: int = Field(default=0, description="Devices selected up to this stage.")
    name: str | None = Field(default=None, description="Stage name from the plan.")
    by_state: dict[str, int] = Field(default_factory=dict, description="Devices this stage selected, per rollout "
                                     "state (pending, installing, converged, failed, rolled_back, ...).")
    state: Literal["pending", "running", "passed", "failed", "skipped"] = Field(description="Stage progress.")


class Decision(_View):
    """One transition the controller made, with its reason."""

    ts_ms: int = Field(description="Unix ms of the decision.")
    stage: int | None = Field(default=None, description="Stage it was made in.")
    action: str = Field(description="What was decided (advance, hold, pause, rollback, ...).")
    reason: str = Field(description="Why, in words a user reads.")
    by: str | None = Field(default=None, description="User for manual actions; None for the controller.")


class RolloutView(_View):
    """A rollout as the rollouts page shows it."""

    rollout_id: str = Field(description="Rollout id.")
    group: str = Field(description="Group it rolls out to.")
    model: str = Field(description="Model name.")
    version: int = Field(description="New version.")
    from_version: int | None = Field(default=None, description="Version the group served before.")
    state: str = Field(description="running/paused/holding/completed/aborted/rolled_back/failed.")
    stage: int = Field(description="Current stage index.")
    stages: list[StageView] = Field(description="Every stage of the plan.")
    devices_by_state: dict[str, int] = Field(default_factory=dict, description="Devices per rollout state.")
    gates: list[GateFigure] = Field(default_factory=list, description="Gates of the current stage.")
    decisions: list[Decision] = Field(default_factory=list, description="Transitions, oldest first.")
    last_reason: str = Field(default="", description="Why the controller made its last decision, in full.")
    started_ms: int = Field(description="Unix ms when started.")
    updated_ms: int = Field(description="Unix ms of the last change.")

    @property
    def active(self) -> bool:
        """Whether manual actions still apply to it."""
        return self.state in ACTIVE_ROLLOUT_STATES


class AuditEntry(_View):
    """One action a user took, as the audit log keeps it."""

    ts_ms: int = Field(description="Unix ms.")
    user: str = Field(description="Who (user name or API token name).")
    action: str = Field(description="Action name (ping, deploy, rollout.pause, ...).")
    target: str = Field(description="Device or rollout id.")
    ok: bool = Field(description="Whether it succeeded.")
    detail: str = Field(default="", description="Result or error line.")


class FleetReader(Protocol):
    """Reads the registry, the kept history and the rollouts."""

    def fleet_name(self) -> str:
        """The fleet this control plane serves (topic level 2)."""
        ...

    def devices(self) -> list[DeviceRow]:
        """Every known device, status computed now (stale after 3 silent telemetry intervals)."""
        ...

    def device(self, device_id: str) -> DeviceDetail | None:
        """One device, or None when unknown."""
        ...

    def latest_figures(self) -> dict[str, dict[str, float]]:
        """Each device's last telemetry figures by metric name, for the alert rules."""
        ...

    def command(self, device_id: str, request_id: str) -> CommandView | None:
        """One command sent to the device and its reply so far, or None when unknown."""
        ...

    def history(self, device_id: str, since_ms: int, until_ms: int) -> list[Sample]:
        """Kept telemetry samples of a device in [since_ms, until_ms], oldest first."""
        ...

    def events(self, device_id: str | None, since_ms: int, limit: int, collapsed: bool = False) -> list[EventRow]:
        """Recent results of one device (or of all), newest first; collapsed: each run of update/frame as one."""
        ...

    def rollouts(self) -> list[RolloutView]:
        """Current and past rollouts, newest first."""
        ...

    def rollout(self, rollout_id: str) -> RolloutView | None:
        """One rollout, or None when unknown."""
        ...

    def audit_log(self, limit: int) -> list[AuditEntry]:
        """The latest audit entries, newest first."""
        ...


class FleetActions(Protocol):
    """Asks the control plane to act; each returns a one-line result and raises DashboardError on refusal."""

    def ping(self, device_id: str) -> Sent:
        """Send a signed ping; the device's reply is read with FleetReader.command."""
        ...

    def deploy(self, device_id: str, version: int) -> str:
        """Set the device's desired version (checked against the store first) and send a signed deploy."""
        ...

    def rollback(self, device_id: str) -> str:
        """Send a signed rollback."""
        ...

    def remove(self, device_id: str) -> str:
        """Forget a device: its registry record and its retained topics (it comes back if it publishes again)."""
        ...

    def start_rollout(self, model: str, version: int, group: str) -> str:
        """Start a staged rollout with the default plan; returns its id."""
        ...

    def rollout_action(self, rollout_id: str, action: RolloutAction, user: str) -> str:
        """Pause, resume, promote or abort a rollout."""
        ...

    def audit(self, user: str, action: str, target: str, ok: bool, detail: str) -> None:
        """Write one entry to the audit log."""
        ...
