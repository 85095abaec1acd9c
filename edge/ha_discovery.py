"""Home Assistant MQTT discovery for one agent: sensors built from the metric table, a model `update` entity and a
"rollout in progress" binary sensor, announced again on HA's birth.

Each figure becomes a sensor of one device (`via_device` the fleet). Templates read a figure only when the report
carries it and otherwise render '' (which Home Assistant ignores without a log line), so figures that come and go
never warn. The device counts as available only while its status is `online`: `stopped` and `offline` both mean
unavailable.

The update entity reads the retained state payload: installed = the served model version, latest = the version the
signed desired state asks for (`desired_version`; the served one when there is none), so HA shows "update
available" while the device converges. It offers NO install action on purpose: installs must be signed commands
or signed desired state, Home Assistant cannot sign, and a relay that signed on HA's behalf would hand every HA
user (and anyone with HA's broker credentials) the fleet's deploy key. Deploy through the control plane
(`edgeferry fleet deploy` / rollouts / the web app), which checks the operator's role and audits it. The binary
sensor is on while the device has a desired version it does not serve yet (a rollout stage or a direct deploy
reached it and it has not converged; it stays on if the device refused the package).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from edge.link.base import Link
from shared.metrics import METRICS, Metric
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, DeviceTopics

log = logging.getLogger(__name__)

HA_PREFIX = "homeassistant"
HA_BIRTH = "online"
AVAILABILITY_TEMPLATE = f"{{{{ '{STATUS_ONLINE}' if value == '{STATUS_ONLINE}' else '{STATUS_OFFLINE}' }}}}"

Config = tuple[str, dict[str, Any]]


def slug(text: str) -> str:
    """Lower-case letters, digits and underscores: what HA entity and object ids may hold."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


# Node ids must be injective across fleets, devices and fleet devices (one fleet's device must never overwrite
# another's discovery config), and Home Assistant allows only [a-zA-Z0-9_-] in them, the very characters ids use.
# Ids without '_' keep the readable forms edgeferry_<fleet> (one '_') and edgeferry_<fleet>_<device> (two). When an
# id holds '_', the fleet's length goes first: edgeferry_<len>_<fleet>_<device> (four or more '_', the length says
# where the fleet ends, a device id is never empty) and edgeferry_<len>_<fleet> (three or more, the fleet runs to
# the end): no two forms or pairs share a node id.


def node_id(topics: DeviceTopics) -> str:
    """The discovery node id of one agent (also its device identifier); injective over (fleet, device)."""
    fleet, device = topics.fleet, topics.device_id
    if "_" in fleet or "_" in device:
        return f"edgeferry_{len(fleet)}_{fleet}_{device}"
    return f"edgeferry_{fleet}_{device}"


def fleet_node_id(fleet: str) -> str:
    """The identifier of the fleet device every agent hangs under (`via_device`); never an agent's node id."""
    return f"edgeferry_{len(fleet)}_{fleet}" if "_" in fleet else f"edgeferry_{fleet}"


# Rendered from the state payload; .get() keeps older agents' payloads (no desired_version) free of HA warnings.
UPDATE_TEMPLATE = (
    "{% set m = value_json.get('model') or {} %}{% set served = m.get('version') %}"
    "{% set desired = value_json.get('desired_version') %}"
    "{% set target = desired if desired is not none else served %}"
    "{{ {'installed_version': (served if served is not none else 'none') | string,"
    " 'latest_version': (target if target is not none else 'none') | string,"
    " 'title': (m.get('name') or 'no') ~ ' model'} | tojson }}"
)
ROLLOUT_TEMPLATE = (
    "{% set desired = value_json.get('desired_version') %}"
    "{{ 'ON' if desired is not none and desired != (value_json.get('model') or {}).get('version') else 'OFF' }}"
)
UPDATE_OBJECT = "model"
ROLLOUT_OBJECT = "rollout"


def value_template(name: str) -> str:
    """Reads one figure, or '' when the report lacks it (Home Assistant ignores empty numeric states quietly)."""
    return f"{{{{ value_json['{name}'] if '{name}' in value_json else '' }}}}"


def config_topic(topics: DeviceTopics, metric: Metric, prefix: str = HA_PREFIX) -> str:
    """Where Home Assistant reads one sensor's discovery config."""
    return f"{prefix}/sensor/{node_id(topics)}/{metric.name}/config"


def metric_sensor(m: Metric, topics: DeviceTopics, *, unique_id: str, entity: str, template: str,
                  device: dict[str, Any], origin: dict[str, str]) -> dict[str, Any]:
    """One metric-table figure as an HA MQTT sensor: state class, unit and device class come from its row."""
    cfg: dict[str, Any] = {
        "name": m.label,
        "unique_id": unique_id,
        "default_entity_id": f"sensor.{entity}",
        "state_topic": topics.telemetry,
        "value_template": template,
        **availability(topics),
        "state_class": "total_increasing" if m.kind == "counter" else "measurement",
        "device": device,
        "origin": origin,
    }
    if m.unit:
        cfg["unit_of_measurement"] = m.unit
    if m.ha_device_class:
        cfg["device_class"] = m.ha_device_class
    return cfg


def discovery_configs(
    topics: DeviceTopics,
    agent_version: str,
    prefix: str = HA_PREFIX,
    reported: Collection[str] | None = None,
) -> list[Config]:
    """(config topic, retained payload) per metric the host reports (`reported`; None: every metric), then the
    model update entity and the rollout binary sensor."""
    node = node_id(topics)
    device = device_info(topics, agent_version)
    origin = {"name": "edgeferry", "sw_version": agent_version}
    out: list[Config] = []
    for m in METRICS:
        if reported is not None and m.name not in reported:
            continue
        cfg = metric_sensor(m, topics, unique_id=f"{node}_{m.name}", entity=f"{slug(node)}_{m.name}",
                            template=value_template(m.name), device=device, origin=origin)
        out.append((config_topic(topics, m, prefix), cfg))
    return out + rollout_configs(topics, agent_version, prefix)


def availability(topics: DeviceTopics) -> dict[str, str]:
    """Available only while the device's status is `online`."""
    return {
        "availability_topic": topics.status,
        "availability_template": AVAILABILITY_TEMPLATE,
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
    }


def device_info(topics: DeviceTopics, agent_version: str) -> dict[str, Any]:
    """The HA device block every entity of one agent shares."""
    node = node_id(topics)
    return {
        "identifiers": [node],
        "name": f"edgeferry {topics.device_id}",
        "manufacturer": "edgeferry",
        "model": "edgeferry agent",
        "sw_version": agent_version,
        "via_device": fleet_node_id(topics.fleet),
    }


def rollout_configs(topics: DeviceTopics, agent_version: str, prefix: str = HA_PREFIX) -> list[Config]:
    """The model `update` entity (installed vs desired version, no install action) and "rollout in progress"."""
    node, entity = node_id(topics), slug(node_id(topics))
    common = {**availability(topics), "state_topic": topics.state, "device": device_info(topics, agent_version),
              "origin": {"name": "edgeferry", "sw_version": agent_version}}
    update = {
        "name": "Model",
        "unique_id": f"{node}_{UPDATE_OBJECT}",
        "default_entity_id": f"update.{entity}_{UPDATE_OBJECT}",
        "value_template": UPDATE_TEMPLATE,
        "release_summary": "Installed: the served model version. Latest: the version the fleet's signed desired "
                           "state asks for. Install through the control plane (signed), not from here.",
        **common,
    }
    rollout = {
        "name": "Rollout in progress",
        "unique_id": f"{node}_{ROLLOUT_OBJECT}",
        "default_entity_id": f"binary_sensor.{entity}_{ROLLOUT_OBJECT}",
        "value_template": ROLLOUT_TEMPLATE,
        "device_class": "running",
        **common,
    }
    return [(f"{prefix}/update/{node}/{UPDATE_OBJECT}/config", update),
            (f"{prefix}/binary_sensor/{node}/{ROLLOUT_OBJECT}/config", rollout)]


def withdrawn_topics(
    topics: DeviceTopics, prefix: str = HA_PREFIX, reported: Collection[str] | None = None
) -> list[str]:
    """Config topics of metrics the host does not report: an empty retained message removes an older entity."""
    if reported is None:
        return []
    return [config_topic(topics, m, prefix) for m in METRICS if m.name not in reported]


class HaDiscovery:
    """Publishes the discovery configs retained, and again whenever Home Assistant announces `online`; a config it
    announced before and not now (a zone or stream removed live, whoever supplied it) is withdrawn, here and once."""

    def __init__(
        self,
        link: Link,
        topics: DeviceTopics,
        agent_version: str,
        prefix: str = HA_PREFIX,
        reported: Collection[str] | None = None,
        extra: Callable[[], Sequence[Config]] | None = None,
    ) -> None:
        self._link = link
        self._extra = extra  # more configs, computed at each publish (zones: edge.ha_detection; streams: ha_streams)
        self._topics = topics
        self._version = agent_version
        self._prefix = prefix
        self._reported = frozenset(reported) if reported is not None else None
        self._announced: set[str] = set()
        self._lock = threading.Lock()  # a Home Assistant birth and a live change may publish at once
        self.published = 0

    @property
    def status_topic(self) -> str:
        """Home Assistant's birth/will topic."""
        return f"{self._prefix}/status"

    def start(self) -> None:
        """Announce every sensor now and subscribe to Home Assistant's status for its restarts."""
        self._link.subscribe(self.status_topic, self._on_ha_status, retained=False)
        self.publish()

    def publish(self) -> None:
        """Publish every config (retained); withdraw those of figures this host does not report and those announced
        before but gone now, with an empty retained config (how Home Assistant removes an entity)."""
        with self._lock:
            configs = discovery_configs(self._topics, self._version, self._prefix, self._reported)
            configs += list(self._extra()) if self._extra is not None else []
            now = {topic for topic, _ in configs}
            for topic, payload in configs:
                self._link.publish_json(topic, payload, retain=True)
            gone = set(withdrawn_topics(self._topics, self._prefix, self._reported)) | (self._announced - now)
            for topic in sorted(gone - now):
                self._link.publish_text(topic, "", retain=True)
            self._announced = now
            self.published += 1

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.decode(errors="replace").strip() == HA_BIRTH:
            log.info("Home Assistant came online; publishing discovery again")
            self.publish()
