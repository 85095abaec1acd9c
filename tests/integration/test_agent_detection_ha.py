"""A real detection agent over Mosquitto tells Home Assistant about its zones: the occupancy sensors and the object
event entity it announces read its own telemetry and object events correctly (templates rendered as HA does); a
signed set-config that removes a zone or a label withdraws their entities and announces the new ones, live."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from edge.ha_discovery import node_id
from tests.edge.detection_package import HW
from tests.edge.test_ha_detection import render
from tests.fixtures.broker import Broker, MqttProbe, Received
from tests.integration.agent_harness import running_agent, send_command, topics_of
from tests.integration.test_agent_detection import BOTTOM, _config


def test_a_detection_agent_announces_zone_sensors_and_object_events_that_read_its_messages(
    tmp_path: Path, mosquitto: Broker
) -> None:
    over: dict[str, Any] = {"mqtt.ha_discovery": True, "detection.objects": ["person"]}
    tree, _ = _config(tmp_path, mosquitto, "yolo", **over)
    topics = topics_of(tree)
    node = node_id(topics)
    probe = MqttProbe(mosquitto, "homeassistant/#", f"{topics.base}/#")
    with running_agent(tree):
        sensor = probe.wait_for(lambda m: m.topic == f"homeassistant/sensor/{node}/zone_bottom_person/config",
                                20, "the bottom/person occupancy sensor").json()
        entity = probe.wait_for(lambda m: m.topic == f"homeassistant/event/{node}/objects/config",
                                20, "the object event entity").json()
        # The scene ends with C standing in the bottom zone: the sensor reads 1 from the agent's telemetry.
        report = probe.wait_for(lambda m: m.topic == topics.telemetry
                                and (m.json().get("zone_counts") or {}).get("bottom/person") == 1, 30,
                                "telemetry counting a person in bottom").json()
        assert render(sensor["value_template"], report) == "1"
        new = probe.wait_for(lambda m: m.topic == entity["state_topic"] and m.json()["type"] == "new", 30,
                             "an object event").json()
    fired = json.loads(render(entity["value_template"], new))
    assert fired["event_type"] == "new" and fired["label"] == "person" and fired["id"] == new["after"]["id"]
    left = f"homeassistant/sensor/{node}/zone_left/config"
    late = MqttProbe(mosquitto, left)  # a Home Assistant starting later still finds the config, retained
    assert late.wait_for(lambda m: m.topic == left, 10, "the retained zone config").retain
    late.close()
    probe.close()


def _cleared(topic: str, m: Received) -> bool:
    return m.topic == topic and m.payload == b""


def test_a_live_zone_and_label_change_withdraws_the_removed_entities_and_announces_the_new(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, _ = _config(tmp_path, mosquitto, "yolo", **{"mqtt.ha_discovery": True, "detection.objects": ["person"]})
    topics = topics_of(tree)
    node = node_id(topics)

    def sensor(object_id: str) -> str:
        return f"homeassistant/sensor/{node}/{object_id}/config"

    def occupancy(object_id: str) -> str:
        return f"homeassistant/binary_sensor/{node}/{object_id}_occupancy/config"

    probe = MqttProbe(mosquitto, "homeassistant/#", f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == sensor("zone_left_person") and m.payload != b"", 20, "left's sensor")
        right = [[24, 0], [HW, 0], [HW, HW], [24, HW]]
        # left leaves, right comes, bottom stays; cars are counted instead of persons
        reply, _ = send_command(probe, topics, "set-config", {"values": {
            "detection.zones": {"bottom": {"coordinates": BOTTOM}, "right": {"coordinates": right}},
            "detection.objects": ["car"]}})
        assert reply["ok"] and reply["result"]["restart_required"] == [], reply
        for gone in ("zone_left", "zone_left_person", "zone_bottom_person"):
            for topic in (sensor(gone), occupancy(gone)):
                probe.wait_for(partial(_cleared, topic), 20, f"{topic} withdrawn")
        added = probe.wait_for(lambda m: m.topic == sensor("zone_right_car") and m.payload != b"", 20,
                               "right's car sensor").json()
        assert added["name"] == "right car"
        probe.wait_for(lambda m: m.topic == occupancy("zone_bottom_car") and m.payload != b"", 20, "bottom's cars")
    assert [m for m in probe.messages if m.topic == sensor("zone_bottom") and m.payload == b""] == []
    # A Home Assistant starting later finds right's config retained and none of left's (filters answer in order).
    late = MqttProbe(mosquitto, sensor("zone_left"), sensor("zone_right"))
    assert late.wait_for(lambda m: m.topic == sensor("zone_right"), 10, "right's retained config").retain
    assert [m.topic for m in late.messages if m.topic == sensor("zone_left")] == []
    late.close()
    probe.close()
