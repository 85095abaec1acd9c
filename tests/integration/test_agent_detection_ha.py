"""A real detection agent over Mosquitto tells Home Assistant about its zones: the occupancy sensors and the object
event entity it announces read its own telemetry and object events correctly (templates rendered as HA does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.ha_discovery import node_id
from tests.edge.test_ha_detection import render
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import running_agent, topics_of
from tests.integration.test_agent_detection import _config


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
