"""Home Assistant discovery for a multi-stream agent: a sub-device per stream under the agent, a sensor per figure
of the stream table, ids injective and inside the device's ACL, templates rendered with Jinja on real reports."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.config import AgentConfig
from edge.detection.config import DetectionConfig
from edge.ha_detection import DetectionAnnouncer
from edge.ha_discovery import HaDiscovery, device_info, discovery_configs, fleet_node_id, node_id
from edge.ha_streams import StreamAnnouncer, object_id, stream_configs, stream_device
from edge.live_config import LiveConfig
from shared.config_loader import load_config
from shared.errors import ConfigError
from shared.metrics import METRICS
from shared.payloads import Envelope, TelemetryPayload
from shared.streams import DEFAULT_STREAM, STREAM_METRICS
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink

TOPICS = DeviceTopics("lab", "cam-1")
ENV = Envelope(device_id="cam-1", boot_id="b", seq=1, ts=1_700_000_000_000)
JINJA = ImmutableSandboxedEnvironment()
# What provision.sh lets a device write: <prefix>/+/<node id>/# (deploy/mosquitto/provision.sh).
ACL = re.compile(r"homeassistant/[^/]+/edgeferry_lab_cam-1/[A-Za-z0-9_-]+/config")


def render(template: str, value_json: Any) -> str:
    return JINJA.from_string(template).render(value_json=value_json)


def test_each_stream_is_a_sub_device_of_the_agent_with_a_sensor_per_figure() -> None:
    configs = dict(stream_configs(TOPICS, "0.1.0", ["door", "yard"]))
    assert len(configs) == 2 * len(STREAM_METRICS)
    assert all(ACL.fullmatch(topic) for topic in configs)
    door = configs["homeassistant/sensor/edgeferry_lab_cam-1/stream_4_door_processed_fps/config"]
    assert door["device"]["identifiers"] == ["edgeferry_lab_cam-1/door"]
    assert door["device"]["via_device"] == node_id(TOPICS) == "edgeferry_lab_cam-1"
    assert (door["name"], door["unit_of_measurement"], door["state_class"]) == ("Processed rate", "frames/s",
                                                                               "measurement")
    frames = configs["homeassistant/sensor/edgeferry_lab_cam-1/stream_4_yard_frames/config"]
    assert frames["state_class"] == "total_increasing" and frames["state_topic"] == TOPICS.telemetry
    assert door["availability_topic"] == TOPICS.status
    assert stream_configs(TOPICS, "0.1.0", []) == []  # a single-stream agent announces no sub-device


def test_templates_read_the_streams_figure_and_render_empty_without_it() -> None:
    configs = dict(stream_configs(TOPICS, "0.1.0", ["door"]))
    fps = configs["homeassistant/sensor/edgeferry_lab_cam-1/stream_4_door_processed_fps/config"]["value_template"]
    p99 = configs["homeassistant/sensor/edgeferry_lab_cam-1/stream_4_door_e2e_ms_p99/config"]["value_template"]
    report = TelemetryPayload.build(ENV, {"fps": 5.0}, streams={"door": {"processed_fps": 14.5}}).model_dump(
        mode="json")
    assert render(fps, report) == "14.5"
    assert render(p99, report) == ""  # the stream did not report it: no warning
    single = TelemetryPayload.build(ENV, {"fps": 5.0}).model_dump(mode="json")
    assert single["streams"] is None and render(fps, single) == ""
    assert render(fps, {"fps": 5.0}) == ""  # an older agent's report, no streams key at all


def test_ids_are_injective_over_streams_and_figures_and_never_an_agents() -> None:
    streams = ["a", "a_e2e", "a_e2e_ms", "e2e", "a-b", "a_b", "x_4_y"]
    topics, uniques, devices = set(), set(), set()
    for fleet, device in (("lab", "cam-1"), ("lab_x", "cam"), ("lab", "x_cam")):
        t = DeviceTopics(fleet, device)
        for topic, cfg in stream_configs(t, "0.1.0", streams):
            topics.add(topic)
            uniques.add(cfg["unique_id"])
            devices.add(cfg["device"]["identifiers"][0])
    assert len(topics) == len(uniques) == 3 * len(streams) * len(STREAM_METRICS)
    assert len(devices) == 3 * len(streams)
    agent_ids = {node_id(DeviceTopics(f, d)) for f, d in itertools.product(["lab", "lab_x", "x"], ["cam-1", "cam"])}
    assert not devices & (agent_ids | {fleet_node_id("lab")})
    # No stream object under the node is one of the agent's own (metrics, model, rollout).
    own = {topic.split("/")[3] for topic, _ in discovery_configs(TOPICS, "0.1.0")}
    assert not own & {object_id(s, m.name) for s in streams for m in STREAM_METRICS}
    assert not any(m.name.startswith("stream_") for m in METRICS)


def test_a_live_stream_change_announces_the_new_stream_and_withdraws_the_removed_one() -> None:
    link = FakeLink()
    announcer = StreamAnnouncer(TOPICS, "0.1.0", "homeassistant", ["door", "yard"])
    announcer.change(["door"])  # discovery off: only remembered
    announcer.change(["door", "yard"])
    discovery = HaDiscovery(link, TOPICS, "0.1.0", extra=announcer.configs)
    announcer.attach(discovery)
    discovery.start()
    yard = "homeassistant/sensor/edgeferry_lab_cam-1/stream_4_yard_frames/config"
    gate = "homeassistant/sensor/edgeferry_lab_cam-1/stream_4_gate_frames/config"
    assert link.on(yard)[-1].json()["device"]["identifiers"] == ["edgeferry_lab_cam-1/yard"]
    announcer.change(["door", "gate"])
    assert link.on(gate)[-1].json()["device"]["name"] == "edgeferry cam-1 gate"
    last = link.on(yard)[-1]
    assert last.payload == b"" and last.retain  # the removed camera's entities go away in Home Assistant
    door = link.on("homeassistant/sensor/edgeferry_lab_cam-1/stream_4_door_frames/config")
    assert len(door) == 2 and door[-1].payload != b""  # the staying camera is announced again, not withdrawn
    for topic, _ in stream_configs(TOPICS, "0.1.0", ["yard"]):  # every figure of the removed camera, once
        assert [p.payload for p in link.on(topic)] == [link.on(topic)[0].payload, b""], topic
    announcer.change(["door", "gate"])
    assert link.on(yard)[-1].payload == b"" and len(link.on(yard)) == 2


def test_a_removed_camera_loses_its_figures_and_its_zones_in_one_publish() -> None:
    """Streams and zones come from two announcers; discovery withdraws whatever either announced and no longer does."""
    door = DetectionConfig.model_validate({"zones": {"door": {"coordinates": [[0, 0], [9, 0], [9, 9], [0, 9]]}}})
    link = FakeLink()
    streams = StreamAnnouncer(TOPICS, "0.1.0", "homeassistant", ["front", "back"])
    zones = DetectionAnnouncer(TOPICS, "0.1.0", "homeassistant", lambda: door,
                               lambda: {name: door for name in streams.names})
    discovery = HaDiscovery(link, TOPICS, "0.1.0", extra=lambda: [*zones.configs(), *streams.configs()])
    streams.attach(discovery)
    zones.attach(discovery)
    discovery.start()
    node = "homeassistant/{}/edgeferry_lab_cam-1/{}/config"
    back = [node.format("sensor", "stream_4_back_frames"), node.format("sensor", "stream_4_back_zone_door"),
            node.format("binary_sensor", "stream_4_back_zone_door_occupancy")]
    assert all(link.on(t)[-1].payload != b"" for t in back)
    streams.change(["front"])
    for topic in back:
        assert [(p.payload == b"", p.retain) for p in link.on(topic)] == [(False, True), (True, True)], topic
    front = node.format("sensor", "stream_5_front_zone_door")
    assert [p.payload != b"" for p in link.on(front)] == [True, True]


def test_the_single_streams_entities_are_the_agents_own_and_a_named_streams_are_under_its_sub_device() -> None:
    assert object_id(DEFAULT_STREAM, "zone_door") == "zone_door"
    assert stream_device(TOPICS, DEFAULT_STREAM, "0.1.0") == device_info(TOPICS, "0.1.0")
    assert object_id("yard", "zone_door") == "stream_4_yard_zone_door"
    assert stream_device(TOPICS, "yard", "0.1.0")["via_device"] == node_id(TOPICS)


def test_a_live_change_naming_a_stream_default_is_refused_before_home_assistant_hears_of_it() -> None:
    """The announcer's names come from a validated config, at start and on a live change: 'default' never reaches it."""
    camera = {"type": "synthetic"}
    base = {"streams": [{"name": "door", "source": camera}]}

    def loader(overrides: Mapping[str, Any]) -> AgentConfig:
        return load_config(AgentConfig, flags={**base, **overrides}, environ={})

    announcer = StreamAnnouncer(TOPICS, "0.1.0", "homeassistant", [s.name for s in loader({}).streams])
    live = LiveConfig(loader({}), loader)
    live.on_change(lambda new, _: lambda: announcer.change([s.name for s in new.streams]))
    live.apply({"streams": [{"name": "door", "source": camera}, {"name": "yard", "source": camera}]}, "command")
    assert announcer.names == ["door", "yard"]
    with pytest.raises(ConfigError, match="'default' is the single source's"):
        live.apply({"streams": [{"name": "door", "source": camera}, {"name": DEFAULT_STREAM, "source": camera}]},
                   "command")
    assert announcer.names == ["door", "yard"]
