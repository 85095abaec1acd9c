"""Home Assistant discovery from the metric table: current schema keys, guarded templates, availability that treats
`stopped` as unavailable, and configs published again on Home Assistant's birth message (real Mosquitto too)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

from edge.config import MqttConfig
from edge.ha_discovery import (
    AVAILABILITY_TEMPLATE,
    HaDiscovery,
    discovery_configs,
    fleet_node_id,
    node_id,
    value_template,
)
from edge.link.mqtt import MqttLink
from shared.metrics import METRICS
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.fixtures.broker import Broker, MqttProbe

TOPICS = DeviceTopics("lab", "cam-1")


def test_one_sensor_per_metric_with_current_keys_and_the_metric_title() -> None:
    configs = dict(discovery_configs(TOPICS, "0.1.0"))
    assert len([t for t in configs if t.startswith("homeassistant/sensor/")]) == len(METRICS)
    cfg = configs["homeassistant/sensor/edgeferry_lab_cam-1/e2e_ms_p99/config"]
    assert cfg["name"] == "End-to-end p99"
    assert cfg["default_entity_id"] == "sensor.edgeferry_lab_cam_1_e2e_ms_p99"
    assert "object_id" not in cfg
    assert cfg["unique_id"] == "edgeferry_lab_cam-1_e2e_ms_p99"
    assert cfg["state_topic"] == "edgeferry/lab/cam-1/telemetry"
    assert cfg["value_template"] == "{{ value_json['e2e_ms_p99'] if 'e2e_ms_p99' in value_json else '' }}"
    assert (cfg["unit_of_measurement"], cfg["device_class"], cfg["state_class"]) == ("ms", "duration", "measurement")
    assert cfg["device"]["via_device"] == "edgeferry_lab"
    assert configs["homeassistant/sensor/edgeferry_lab_cam-1/frames/config"]["state_class"] == "total_increasing"
    assert all(len(c["name"]) <= 32 for c in configs.values())


def test_availability_maps_every_status_but_online_to_unavailable() -> None:
    cfg = discovery_configs(TOPICS, "0.1.0")[0][1]
    assert cfg["availability_topic"] == TOPICS.status
    assert cfg["availability_template"] == AVAILABILITY_TEMPLATE
    assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
    assert AVAILABILITY_TEMPLATE == "{{ 'online' if value == 'online' else 'offline' }}"


def test_only_reported_figures_are_announced_when_the_caller_says_which() -> None:
    configs = discovery_configs(TOPICS, "0.1.0", reported={"fps", "cpu_pct"})
    assert sorted(t.split("/")[-2] for t, _ in configs if "/sensor/" in t) == ["cpu_pct", "fps"]
    assert {t.split("/")[1] for t, _ in configs} == {"sensor", "update", "binary_sensor"}


def test_update_entity_shows_installed_vs_desired_from_the_state_and_offers_no_install() -> None:
    configs = dict(discovery_configs(TOPICS, "0.1.0"))
    update = configs["homeassistant/update/edgeferry_lab_cam-1/model/config"]
    assert update["state_topic"] == "edgeferry/lab/cam-1/state"
    assert update["default_entity_id"] == "update.edgeferry_lab_cam_1_model"
    assert "desired_version" in update["value_template"] and "installed_version" in update["value_template"]
    assert not {"command_topic", "payload_install"} & set(update)
    rollout = configs["homeassistant/binary_sensor/edgeferry_lab_cam-1/rollout/config"]
    assert rollout["name"] == "Rollout in progress" and rollout["state_topic"] == TOPICS.state
    for cfg in (update, rollout):
        assert cfg["device"]["identifiers"] == ["edgeferry_lab_cam-1"]
        assert cfg["device"]["via_device"] == "edgeferry_lab"
        assert cfg["availability_template"] == AVAILABILITY_TEMPLATE
    assert value_template("gpu_pct") == "{{ value_json['gpu_pct'] if 'gpu_pct' in value_json else '' }}"


def test_start_publishes_retained_configs_and_withdraws_unreported_ones() -> None:
    link = FakeLink()
    HaDiscovery(link, TOPICS, "0.1.0", reported={m.name for m in METRICS} - {"gpu_pct"}).start()
    gpu = link.on("homeassistant/sensor/edgeferry_lab_cam-1/gpu_pct/config")
    assert [(p.payload, p.retain) for p in gpu] == [(b"", True)]
    fps = link.on("homeassistant/sensor/edgeferry_lab_cam-1/fps/config")
    assert len(fps) == 1 and fps[0].retain and fps[0].json()["name"] == "Frame rate"
    assert "homeassistant/status" in link.handlers


def test_home_assistant_birth_republishes_everything_and_other_payloads_do_not() -> None:
    link = FakeLink()
    ha = HaDiscovery(link, TOPICS, "0.1.0")
    ha.start()
    link.deliver("homeassistant/status", b"offline")
    assert ha.published == 1
    link.deliver("homeassistant/status", b"online")
    assert ha.published == 2
    assert len(link.on("homeassistant/sensor/edgeferry_lab_cam-1/fps/config")) == 2
    assert len(link.on("homeassistant/update/edgeferry_lab_cam-1/model/config")) == 2
    assert len(link.on("homeassistant/binary_sensor/edgeferry_lab_cam-1/rollout/config")) == 2


def test_birth_message_over_a_real_broker_brings_the_configs_again(
    mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe], tmp_path: Path,
) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, outbox_path=tmp_path / "outbox.sqlite",
                     keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1, flush_timeout_s=3)
    link = MqttLink(cfg, TOPICS)
    ha = HaDiscovery(link, TOPICS, "0.1.0", reported={"fps", "frames"})
    ha.start()
    link.start()
    try:
        watcher = mqtt_probe(mosquitto, "homeassistant/#")
        fps_topic = "homeassistant/sensor/edgeferry_lab_cam-1/fps/config"
        watcher.wait_for(lambda m: m.topic == fps_topic, what="the fps config")
        late = mqtt_probe(mosquitto, fps_topic).wait_for(lambda m: m.topic == fps_topic, what="the retained config")
        assert late.retain and json.loads(late.payload)["default_entity_id"] == "sensor.edgeferry_lab_cam_1_fps"
        home_assistant = mqtt_probe(mosquitto)
        home_assistant.publish("homeassistant/status", "online")
        watcher.wait_count(fps_topic, 2, timeout=10)
        watcher.wait_count("homeassistant/update/edgeferry_lab_cam-1/model/config", 2, timeout=10)
        assert ha.published >= 2
    finally:
        link.stop()


def _idents() -> list[str]:
    """Every fleet or device id of up to 3 characters from an alphabet with the separators ids may contain."""
    first, rest = "a1", "a1_-"
    out = list(first)
    for n in (2, 3):
        out += [f + "".join(t) for f in first for t in itertools.product(rest, repeat=n - 1)]
    return out


def test_node_ids_never_collide_across_fleets_devices_and_fleet_devices() -> None:
    assert node_id(DeviceTopics("a_b", "c")) != node_id(DeviceTopics("a", "b_c"))
    assert fleet_node_id("a_b") != node_id(DeviceTopics("a", "b"))
    ids = _idents()
    seen: dict[str, tuple[str, ...]] = {}
    for fleet in ids:
        named = [(fleet_node_id(fleet), (fleet,))] + [(node_id(DeviceTopics(fleet, d)), (fleet, d)) for d in ids]
        for node, who in named:
            assert who == seen.setdefault(node, who), f"{who} and {seen[node]} share node id {node}"
            assert re.fullmatch(r"[a-zA-Z0-9_-]+", node), node
    assert len(seen) == len(ids) * (len(ids) + 1)


def test_ids_without_underscores_keep_their_node_ids() -> None:
    assert node_id(TOPICS) == "edgeferry_lab_cam-1" and fleet_node_id("lab") == "edgeferry_lab"


def test_colliding_pairs_get_their_own_discovery_topics_and_devices() -> None:
    one, two = DeviceTopics("a_b", "c"), DeviceTopics("a", "b_c")
    first, second = dict(discovery_configs(one, "0.1.0")), dict(discovery_configs(two, "0.1.0"))
    assert not set(first) & set(second)
    assert {c["unique_id"] for c in first.values()}.isdisjoint(c["unique_id"] for c in second.values())
    a, b = next(iter(first.values()))["device"], next(iter(second.values()))["device"]
    assert a["identifiers"] != b["identifiers"] and a["via_device"] != b["via_device"]
    for topic in [*first, *second]:
        prefix, component, node, obj, leaf = topic.split("/")
        assert (prefix, leaf) == ("homeassistant", "config") and component in {"sensor", "update", "binary_sensor"}
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", node) and re.fullmatch(r"[a-zA-Z0-9_-]+", obj)


def test_publish_withdraws_any_config_announced_before_and_gone_now_once() -> None:
    """Withdrawal is discovery's own, from the configs it announced last time vs now, whoever supplied them."""
    link = FakeLink()
    sensor = "homeassistant/sensor/edgeferry_lab_cam-1/{}/config"
    current = [[(sensor.format("extra_a"), {"name": "a"}), (sensor.format("extra_b"), {"name": "b"})]]
    ha = HaDiscovery(link, TOPICS, "0.1.0", reported={"fps"}, extra=lambda: current[0])
    ha.start()
    current[0] = [(sensor.format("extra_a"), {"name": "a"})]
    link.deliver("homeassistant/status", b"online")
    assert [(p.payload, p.retain) for p in link.on(sensor.format("extra_b"))][-1] == (b"", True)
    assert [p.payload != b"" for p in link.on(sensor.format("extra_a"))] == [True, True]
    assert [p.payload != b"" for p in link.on(sensor.format("fps"))] == [True, True]  # the agent's own stay
    ha.publish()
    assert len(link.on(sensor.format("extra_b"))) == 2  # withdrawn once, not at every publish
