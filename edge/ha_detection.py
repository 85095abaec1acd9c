"""Home Assistant discovery for a detector, as Frigate's integration offers it: per zone, and per zone and label, a
count sensor (objects in it now) and an occupancy binary sensor (on while the count is above 0), read from the
telemetry's zone_counts (a report without the count: the sensor renders '', occupancy off); an `event` entity that
fires on every
object event (new/update/end, with the label, id, zones and score as attributes); and device triggers for an object
appearing and ending, for automations.

Zones come from the agent's `detection.zones` (a multi-stream agent: each stream's own, on the stream's sub-device,
read from its own `<stream>:` keys); the labels counted per zone are the zone's own `objects`, else the
detection's `objects` (without either, only the zone's total is announced: labels are the model's, unknown here).
Templates render '' when a report lacks a count, so a zone that is not reported never warns. A live change of the
zones or labels (signed set-config, SIGHUP) announces the new entities; HaDiscovery withdraws the removed ones with an
empty retained config, as Home Assistant expects (DetectionAnnouncer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.detection.config import DetectionConfig
from edge.ha_discovery import HA_PREFIX, Config, HaDiscovery, availability, device_info, node_id, slug
from edge.ha_streams import object_id as stream_object_id
from edge.ha_streams import stream_device
from shared.object_events import ObjectTopics
from shared.streams import DEFAULT_STREAM, zone_key
from shared.topics import DeviceTopics

OBJECT_EVENT_TYPES = ("new", "update", "end")
TRIGGER_TYPES = ("new", "end")  # the two an automation waits for; updates are in the event entity
EVENT_OBJECT = "objects"
EVENT_TEMPLATE = (
    "{% set a = value_json.get('after') or {} %}"
    "{{ {'event_type': value_json.get('type'), 'label': a.get('label'), 'id': a.get('id'),"
    " 'score': a.get('score'), 'zones': a.get('current_zones'), 'entered_zones': a.get('entered_zones'),"
    " 'stationary': a.get('stationary'), 'loitering': a.get('loitering'), 'has_snapshot': a.get('has_snapshot')}"
    " | tojson }}"
)
TRIGGER_TEMPLATE = "{{ value_json.get('type') }}"


def _slug(text: str) -> str:
    return slug(text) or "label"


def zone_labels(cfg: DetectionConfig) -> dict[str, list[str]]:
    """Zone -> the labels counted in it per label (its own `objects`, else the detection's, else none)."""
    return {name: list(zone.objects or cfg.objects) for name, zone in cfg.zones.items()}


def count_template(key: str) -> str:
    """Reads zone_counts[key], or '' when the report has no such count (the key quoted as a Jinja string)."""
    quoted = json.dumps(key)
    return (f"{{% set z = value_json.get('zone_counts') or {{}} %}}"
            f"{{{{ z[{quoted}] if {quoted} in z else '' }}}}")


def occupancy_template(key: str) -> str:
    """ON while zone_counts[key] is above 0, else OFF (also when the report has no such count)."""
    quoted = json.dumps(key)
    return (f"{{% set z = value_json.get('zone_counts') or {{}} %}}"
            f"{{{{ 'ON' if (z[{quoted}] if {quoted} in z else 0) > 0 else 'OFF' }}}}")


def zone_configs(topics: DeviceTopics, agent_version: str, zones: Mapping[str, Sequence[str]],
                 prefix: str = HA_PREFIX, stream: str = DEFAULT_STREAM) -> list[Config]:
    """A count sensor and an occupancy binary sensor per zone (every object in it) and per zone and label.

    A named stream's zones hang under its sub-device (edge.ha_streams) and read its own keys (shared.streams.zone_key):
    two cameras' zones of one name are two entities.
    """
    node, slug = node_id(topics), _slug(node_id(topics))
    device = stream_device(topics, stream, agent_version)
    common = {"state_topic": topics.telemetry, **availability(topics), "state_class": "measurement",
              "unit_of_measurement": "objects", "device": device,
              "origin": {"name": "edgeferry", "sw_version": agent_version}}
    out: list[Config] = []
    for zone in sorted(zones):
        entries = [(zone, f"zone_{zone}", f"{zone} objects")]
        seen: set[str] = set()
        for label in zones[zone]:
            key = f"zone_{zone}_{_slug(label)}"
            if key not in seen:  # two labels spelled alike share an entity id: the first is kept
                seen.add(key)
                entries.append((f"{zone}/{label}", key, f"{zone} {label}"))
        for count_key, object_id, name in entries:
            count_key = zone_key(stream, count_key)
            object_id = stream_object_id(stream, object_id)
            cfg = {"name": name[:64], "unique_id": f"{node}_{object_id}",
                   "default_entity_id": f"sensor.{slug}_{object_id.lower()}",
                   "value_template": count_template(count_key), "icon": "mdi:account-group", **common}
            out.append((f"{prefix}/sensor/{node}/{object_id}/config", cfg))
            occupied = {"name": f"{name[:54]} occupancy", "unique_id": f"{node}_{object_id}_occupancy",
                        "default_entity_id": f"binary_sensor.{slug}_{object_id.lower()}_occupancy",
                        "value_template": occupancy_template(count_key), "device_class": "occupancy",
                        "state_topic": topics.telemetry, **availability(topics), "device": common["device"],
                        "origin": common["origin"]}
            out.append((f"{prefix}/binary_sensor/{node}/{object_id}_occupancy/config", occupied))
    return out


def event_configs(topics: DeviceTopics, agent_version: str, prefix: str = HA_PREFIX) -> list[Config]:
    """The object-event entity and the device triggers for an object appearing (new) and ending (end)."""
    node, slug = node_id(topics), _slug(node_id(topics))
    events = ObjectTopics(topics).events
    device = device_info(topics, agent_version)
    entity = {
        "name": "Object",
        "unique_id": f"{node}_{EVENT_OBJECT}",
        "default_entity_id": f"event.{slug}_{EVENT_OBJECT}",
        "state_topic": events,
        "event_types": list(OBJECT_EVENT_TYPES),
        "value_template": EVENT_TEMPLATE,
        "icon": "mdi:cctv",
        **availability(topics),
        "device": device,
        "origin": {"name": "edgeferry", "sw_version": agent_version},
    }
    out: list[Config] = [(f"{prefix}/event/{node}/{EVENT_OBJECT}/config", entity)]
    for kind in TRIGGER_TYPES:
        trigger: dict[str, Any] = {"automation_type": "trigger", "topic": events, "type": kind, "subtype": "object",
                                   "payload": kind, "value_template": TRIGGER_TEMPLATE, "device": device}
        out.append((f"{prefix}/device_automation/{node}/object_{kind}/config", trigger))
    return out


def detection_configs(topics: DeviceTopics, agent_version: str, cfg: DetectionConfig,
                      prefix: str = HA_PREFIX, streams: Mapping[str, DetectionConfig] | None = None) -> list[Config]:
    """Everything a detector announces; none for an agent whose config names no zones or objects (a classifier).

    `streams`: a multi-stream agent's streams and the settings each runs under; their zones are announced per stream.
    """
    every = [cfg, *(streams or {}).values()]
    if not any(c.zones or c.objects for c in every):
        return []
    if not streams:
        zones = zone_configs(topics, agent_version, zone_labels(cfg), prefix)
    else:
        zones = [z for name in sorted(streams)
                 for z in zone_configs(topics, agent_version, zone_labels(streams[name]), prefix, name)]
    return zones + event_configs(topics, agent_version, prefix)


class DetectionAnnouncer:
    """The detector's entities Home Assistant is told of: the configs in force at each discovery publish (HaDiscovery
    withdraws those it announced before and not now: a zone or label removed live)."""

    def __init__(self, topics: DeviceTopics, agent_version: str, prefix: str,
                 current: Callable[[], DetectionConfig],
                 streams: Callable[[], Mapping[str, DetectionConfig]] | None = None) -> None:
        self._topics = topics
        self._version = agent_version
        self._prefix = prefix
        self._current = current
        self._streams = streams  # a multi-stream agent's streams and their settings (zones are per camera)
        self._discovery: HaDiscovery | None = None

    def configs(self) -> list[Config]:
        """The current configs (HaDiscovery's `extra`)."""
        streams = None if self._streams is None else self._streams()
        return detection_configs(self._topics, self._version, self._current(), self._prefix, streams)

    def attach(self, discovery: HaDiscovery) -> None:
        """Discovery is on: later changes are announced through it."""
        self._discovery = discovery

    def change(self) -> None:
        """The detection settings changed live: publish discovery again (nothing while discovery is off)."""
        if self._discovery is not None:
            self._discovery.publish()
