"""MQTT topic builders: edgeferry/<fleet>/<device_id>/{status,state,telemetry,events,benchmark,desired,cmd/...}."""

from __future__ import annotations

from shared.names import check_ident

ROOT = "edgeferry"
COMMANDS = ("deploy", "rollback", "set-config", "ping", "benchmark")
STATUS_ONLINE = "online"
STATUS_STOPPED = "stopped"
STATUS_OFFLINE = "offline"


class DeviceTopics:
    """All topics of one device, built once from validated ids."""

    def __init__(self, fleet: str, device_id: str, root: str = ROOT) -> None:
        self.fleet = check_ident(fleet, "fleet")
        self.device_id = check_ident(device_id, "device id")
        self.base = f"{root}/{self.fleet}/{self.device_id}"
        self.status = f"{self.base}/status"
        self.state = f"{self.base}/state"
        self.telemetry = f"{self.base}/telemetry"
        self.events = f"{self.base}/events"
        self.benchmark = f"{self.base}/benchmark"  # retained BenchmarkPayload: the runtime choice and its figures
        self.desired = f"{self.base}/desired"  # retained signed DesiredState (shared.desired_state)
        self.cmd_filter = f"{self.base}/cmd/+"

    def cmd(self, name: str) -> str:
        """Inbound command topic."""
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        """Reply topic for a command."""
        return f"{self.base}/cmd/{name}/reply"

    def command_name(self, topic: str) -> str | None:
        """The command name of an inbound topic, or None when the topic is not a command of ours."""
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return None if "/" in name or not name else name


def fleet_filter(fleet: str, leaf: str, root: str = ROOT) -> str:
    """Subscription filter for one leaf across a fleet, e.g. edgeferry/lab/+/telemetry."""
    return f"{root}/{check_ident(fleet, 'fleet')}/+/{leaf}"
