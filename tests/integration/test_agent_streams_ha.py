"""A real agent serving four streams over Mosquitto tells Home Assistant about each stream (a sub-device per
camera, a sensor per figure) that reads its own telemetry; a stream added live is announced and a removed one
withdrawn (its retained configs cleared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.ha_discovery import node_id
from edge.ha_streams import object_id
from tests.edge.test_ha_streams import render
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import running_agent, topics_of
from tests.integration.test_agent_streams import NAMES, config


def test_each_stream_is_announced_reads_its_telemetry_and_follows_live_changes(tmp_path: Path,
                                                                               mosquitto: Broker) -> None:
    tree = config(tmp_path, mosquitto, **{"mqtt.ha_discovery": True})
    topics = topics_of(tree)
    node = node_id(topics)

    def topic(stream: str, figure: str) -> str:
        return f"homeassistant/sensor/{node}/{object_id(stream, figure)}/config"

    probe = MqttProbe(mosquitto, "homeassistant/#", f"{topics.base}/#")

    def announced(stream: str, figure: str) -> Any:
        wanted = topic(stream, figure)
        return probe.wait_for(lambda m: m.topic == wanted and m.payload != b"", 20, f"{wanted}").json()
    with running_agent(tree) as agent:
        sensors = {name: announced(name, "frames") for name in NAMES}
        assert {s["device"]["via_device"] for s in sensors.values()} == {node}
        report = probe.wait_for(lambda m: m.topic == topics.telemetry
                                and ((m.json().get("streams") or {}).get("gate") or {}).get("frames", 0) > 0, 30,
                                "telemetry with gate's frames").json()
        assert render(sensors["gate"]["value_template"], report) == str(report["streams"]["gate"]["frames"])

        dock = {**tree["streams"][0], "name": "dock"}
        tree["streams"] = [*tree["streams"][:3], dock]  # clip leaves, dock comes
        result = agent.reload()
        assert "streams" in result["applied"], result
        added = announced("dock", "processed_fps")
        assert added["device"]["name"] == f"edgeferry {topics.device_id} dock"
        probe.wait_for(lambda m: m.topic == topic("clip", "frames") and m.payload == b"", 20,
                       "the removed stream's config cleared")
    # A Home Assistant starting later finds the added stream's config retained and none of the removed one's
    # (Mosquitto sends a subscription's retained messages filter by filter, so clip's would come before dock's).
    late = MqttProbe(mosquitto, topic("clip", "frames"), topic("dock", "frames"))
    assert late.wait_for(lambda m: m.topic == topic("dock", "frames"), 10, "dock's retained config").retain
    assert [m.topic for m in late.messages if m.topic == topic("clip", "frames")] == []
    late.close()
    probe.close()
