"""Home Assistant discovery for a multi-stream agent: one sub-device per stream (`via_device` the agent) with a
sensor per figure of shared.streams' table, read from telemetry's `streams` object.

Topics stay under the agent's own node id (the broker ACL lets a device write only `<prefix>/+/<node id>/#`): the
object id is `stream_<len>_<stream>_<figure>`, the stream name's length saying where it ends, so no two (stream,
figure) pairs share one and none collides with the agent's other objects (metric names, `model`, `rollout`,
`zone_*`). The sub-device's identifier and each unique id join node, stream and figure with '/', which neither ids
nor stream names may hold: injective across fleets, devices and streams. Templates render '' while a report lacks
the stream or the figure, so a stream that comes and goes never warns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.ha_discovery import HA_PREFIX, Config, HaDiscovery, device_info, metric_sensor, node_id, slug
from shared.metrics import Metric
from shared.streams import DEFAULT_STREAM, STREAM_METRICS, check_stream_name
from shared.topics import DeviceTopics


def object_id(stream: str, name: str) -> str:
    """The discovery object id of one stream's entity (under the agent's node id); the single stream's
    (DEFAULT_STREAM) are the agent's own, unprefixed, as shared.streams.zone_key keeps their telemetry keys."""
    return name if stream == DEFAULT_STREAM else _prefixed(stream, name)


def _prefixed(stream: str, name: str) -> str:
    return f"stream_{len(stream)}_{stream}_{name}"


def stream_device_id(topics: DeviceTopics, stream: str) -> str:
    """The HA device identifier of one stream: never an agent's or a fleet's node id (they hold no '/')."""
    return f"{node_id(topics)}/{stream}"


def stream_value_template(stream: str, figure: str) -> str:
    """Reads streams[stream][figure], or '' when the report lacks either (a single-stream or an older report)."""
    return (f"{{% set s = (value_json.get('streams') or {{}}).get('{stream}') or {{}} %}}"
            f"{{{{ s['{figure}'] if '{figure}' in s else '' }}}}")


def stream_device(topics: DeviceTopics, stream: str, agent_version: str) -> dict[str, Any]:
    """The HA device block of one stream, hung under its agent; the single stream's is the agent's own."""
    if stream == DEFAULT_STREAM:
        return device_info(topics, agent_version)
    return _sub_device(topics, stream, agent_version)


def _sub_device(topics: DeviceTopics, stream: str, agent_version: str) -> dict[str, Any]:
    return {
        "identifiers": [stream_device_id(topics, stream)],
        "name": f"edgeferry {topics.device_id} {stream}",
        "manufacturer": "edgeferry",
        "model": "edgeferry stream",
        "sw_version": agent_version,
        "via_device": node_id(topics),
    }


def _sensor(topics: DeviceTopics, stream: str, m: Metric, device: dict[str, Any],
            origin: dict[str, str]) -> dict[str, Any]:
    return metric_sensor(m, topics, unique_id=f"{stream_device_id(topics, stream)}/{m.name}",
                         entity=f"{slug(node_id(topics))}_{slug(_prefixed(stream, m.name))}",
                         template=stream_value_template(stream, m.name), device=device, origin=origin)


def stream_configs(topics: DeviceTopics, agent_version: str, streams: Sequence[str],
                   prefix: str = HA_PREFIX) -> list[Config]:
    """(config topic, retained payload) per stream and figure of the table; none for a single-stream agent.

    Every stream's figures are under its own prefix and sub-device. None is named 'default' (the single source's
    name, whose ids are the agent's own): the names come from a validated config's `streams:`, at start and on each
    live change, and edge.config refuses that name there."""
    node = node_id(topics)
    origin = {"name": "edgeferry", "sw_version": agent_version}
    out: list[Config] = []
    for stream in sorted(set(streams)):
        check_stream_name(stream)
        device = _sub_device(topics, stream, agent_version)
        for m in STREAM_METRICS:
            out.append((f"{prefix}/sensor/{node}/{_prefixed(stream, m.name)}/config",
                        _sensor(topics, stream, m, device, origin)))
    return out


class StreamAnnouncer:
    """The streams Home Assistant is told of: their configs at each discovery publish, and on a live change of
    `streams:` discovery published again (HaDiscovery withdraws the removed streams' configs; nothing while
    discovery is off)."""

    def __init__(self, topics: DeviceTopics, agent_version: str, prefix: str, names: Sequence[str]) -> None:
        self._topics = topics
        self._version = agent_version
        self._prefix = prefix
        self.names = list(names)
        self._discovery: HaDiscovery | None = None

    def configs(self) -> list[Config]:
        """The current streams' configs (HaDiscovery's `extra`)."""
        return stream_configs(self._topics, self._version, self.names, self._prefix)

    def attach(self, discovery: HaDiscovery) -> None:
        """Discovery is on: later changes are announced through it."""
        self._discovery = discovery

    def change(self, names: Sequence[str]) -> None:
        """The agent now serves these streams: publish discovery again (the streams that left are withdrawn)."""
        self.names = list(names)
        if self._discovery is not None:
            self._discovery.publish()
