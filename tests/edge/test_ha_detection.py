"""Home Assistant discovery for a detector: an occupancy sensor per zone and per zone and label read from the
telemetry's zone_counts, an `event` entity fed by the object events, device triggers for objects appearing and
ending; the templates rendered with Jinja (as Home Assistant does) on real payloads; nothing for a classifier; and
live zone changes announced on Home Assistant's next birth, and at once by the agent with removed zones' and labels'
configs withdrawn."""

from __future__ import annotations

import json
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.detection.config import DetectionConfig
from edge.ha_detection import DetectionAnnouncer, detection_configs, zone_labels
from edge.ha_discovery import HaDiscovery
from shared.object_events import ObjectEventPayload, ObjectState
from shared.payloads import Envelope, TelemetryPayload
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink

TOPICS = DeviceTopics("lab", "cam-1")
SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]
ENV = Envelope(device_id="cam-1", boot_id="b", seq=1, ts=1_700_000_000_000)
DETECTOR = DetectionConfig.model_validate({
    "objects": ["person", "car"],
    "zones": {"driveway": {"coordinates": SQUARE}, "porch": {"coordinates": SQUARE, "objects": ['bag "red"']}},
})
JINJA = ImmutableSandboxedEnvironment()


def render(template: str, value_json: Any) -> str:
    """Home Assistant renders MQTT value templates with value_json bound to the parsed payload."""
    return JINJA.from_string(template).render(value_json=value_json)


def configs() -> dict[str, dict[str, Any]]:
    return dict(detection_configs(TOPICS, "0.1.0", DETECTOR))


def test_one_occupancy_sensor_per_zone_and_per_zone_and_label() -> None:
    sensors = {t: c for t, c in configs().items() if t.startswith("homeassistant/sensor/")}
    assert sorted(t.split("/")[3] for t in sensors) == [
        "zone_driveway", "zone_driveway_car", "zone_driveway_person", "zone_porch", "zone_porch_bag_red"]
    person = sensors["homeassistant/sensor/edgeferry_lab_cam-1/zone_driveway_person/config"]
    assert person["name"] == "driveway person" and person["state_topic"] == TOPICS.telemetry
    assert person["unique_id"] == "edgeferry_lab_cam-1_zone_driveway_person"
    assert person["default_entity_id"] == "sensor.edgeferry_lab_cam_1_zone_driveway_person"
    assert (person["state_class"], person["unit_of_measurement"]) == ("measurement", "objects")
    assert person["device"]["identifiers"] == ["edgeferry_lab_cam-1"] and person["availability_topic"] == TOPICS.status
    assert zone_labels(DETECTOR) == {"driveway": ["person", "car"], "porch": ['bag "red"']}


def test_zone_templates_read_the_telemetrys_counts_and_render_empty_without_them() -> None:
    report = TelemetryPayload.build(ENV, {"fps": 5.0}, zone_counts={
        "driveway": 2, "driveway/person": 1, "porch": 1, 'porch/bag "red"': 1}).model_dump(mode="json")
    c = configs()
    sensor = "homeassistant/sensor/edgeferry_lab_cam-1/{}/config"
    assert render(c[sensor.format("zone_driveway")]["value_template"], report) == "2"
    assert render(c[sensor.format("zone_driveway_person")]["value_template"], report) == "1"
    assert render(c[sensor.format("zone_porch_bag_red")]["value_template"], report) == "1"  # quotes in a label
    assert render(c[sensor.format("zone_driveway_car")]["value_template"], report) == ""  # not counted: no warning
    assert render(c[sensor.format("zone_driveway")]["value_template"], {"fps": 5.0}) == ""


def test_occupancy_binary_sensors_are_on_while_their_count_is_above_zero() -> None:
    c = configs()
    occupancy = {t: cfg for t, cfg in c.items() if t.startswith("homeassistant/binary_sensor/")}
    assert len(occupancy) == 5
    person = occupancy["homeassistant/binary_sensor/edgeferry_lab_cam-1/zone_driveway_person_occupancy/config"]
    assert (person["name"], person["device_class"], person["state_topic"]) == (
        "driveway person occupancy", "occupancy", TOPICS.telemetry)
    assert person["unique_id"] == "edgeferry_lab_cam-1_zone_driveway_person_occupancy"
    someone = TelemetryPayload.build(ENV, {}, zone_counts={"driveway": 1, "driveway/person": 1}).model_dump(mode="json")
    nobody = TelemetryPayload.build(ENV, {}, zone_counts={"driveway": 0}).model_dump(mode="json")
    assert render(person["value_template"], someone) == "ON"
    assert render(person["value_template"], nobody) == "OFF"  # no person count: nobody there
    assert render(person["value_template"], {"fps": 5.0}) == "OFF"


def test_object_events_feed_an_event_entity_and_new_and_end_triggers() -> None:
    c = configs()
    entity = c["homeassistant/event/edgeferry_lab_cam-1/objects/config"]
    assert entity["state_topic"] == "edgeferry/lab/cam-1/objects/events"
    assert entity["event_types"] == ["new", "update", "end"]
    state = ObjectState(id="1-1", label="person", class_id=0, score=0.8, top_score=0.9, box=(1, 2, 3, 4), area=4,
                        current_zones=["driveway"], entered_zones=["driveway"], first_seen_ms=1, last_seen_ms=2,
                        frame_time_ms=2, frame=1, stationary=True)
    event = ObjectEventPayload(**ENV.model_dump(), type="update", before=state, after=state).model_dump(mode="json")
    fired = json.loads(render(entity["value_template"], event))
    assert fired["event_type"] == "update" and fired["label"] == "person" and fired["zones"] == ["driveway"]
    assert fired["id"] == "1-1" and fired["stationary"] is True
    for kind in ("new", "end"):
        trigger = c[f"homeassistant/device_automation/edgeferry_lab_cam-1/object_{kind}/config"]
        assert trigger["automation_type"] == "trigger" and trigger["topic"] == entity["state_topic"]
        assert (trigger["type"], trigger["subtype"], trigger["payload"]) == (kind, "object", kind)
        assert render(trigger["value_template"], event) == "update"  # an update matches neither trigger
        assert render(trigger["value_template"], {**event, "type": kind}) == kind


def test_a_classifier_announces_nothing_of_this() -> None:
    assert detection_configs(TOPICS, "0.1.0", DetectionConfig()) == []


def test_discovery_announces_the_zones_configured_when_home_assistant_is_born() -> None:
    link = FakeLink()
    current = [DETECTOR]
    ha = HaDiscovery(link, TOPICS, "0.1.0", reported={"fps"},
                     extra=lambda: detection_configs(TOPICS, "0.1.0", current[0]))
    ha.start()
    porch = "homeassistant/sensor/edgeferry_lab_cam-1/zone_porch/config"
    assert [p.retain for p in link.on(porch)] == [True]
    assert link.on("homeassistant/event/edgeferry_lab_cam-1/objects/config")[0].json()["name"] == "Object"
    current[0] = DetectionConfig.model_validate({"zones": {"gate": {"coordinates": SQUARE}}})  # set live
    link.deliver("homeassistant/status", b"online")
    assert len(link.on("homeassistant/sensor/edgeferry_lab_cam-1/zone_gate/config")) == 1
    assert len(link.on("homeassistant/sensor/edgeferry_lab_cam-1/fps/config")) == 2


def test_a_live_change_withdraws_removed_zones_and_labels_and_announces_new_ones() -> None:
    link = FakeLink()
    current = [DETECTOR]
    announcer = DetectionAnnouncer(TOPICS, "0.1.0", "homeassistant", lambda: current[0])
    ha = HaDiscovery(link, TOPICS, "0.1.0", reported={"fps"}, extra=announcer.configs)
    announcer.attach(ha)
    ha.start()
    sensor = "homeassistant/sensor/edgeferry_lab_cam-1/{}/config"
    occupancy = "homeassistant/binary_sensor/edgeferry_lab_cam-1/{}_occupancy/config"
    # porch leaves, gate comes, the driveway no longer counts cars
    current[0] = DetectionConfig.model_validate({
        "objects": ["person"], "zones": {"driveway": {"coordinates": SQUARE}, "gate": {"coordinates": SQUARE}}})
    announcer.change()
    for gone in ("zone_porch", "zone_porch_bag_red", "zone_driveway_car"):
        for topic in (sensor.format(gone), occupancy.format(gone)):
            last = link.on(topic)[-1]
            assert (last.payload, last.retain) == (b"", True), topic  # HA removes the entity
    for kept in ("zone_driveway", "zone_driveway_person"):
        assert [p.payload != b"" for p in link.on(sensor.format(kept))] == [True, True]
    assert [p.json()["name"] for p in link.on(sensor.format("zone_gate_person"))] == ["gate person"]
    assert link.on(occupancy.format("zone_gate"))[-1].retain
    # Nothing configured is left: the event entity and triggers go too, and a later change withdraws nothing twice.
    current[0] = DetectionConfig()
    announcer.change()
    assert link.on("homeassistant/event/edgeferry_lab_cam-1/objects/config")[-1].payload == b""
    assert link.on("homeassistant/device_automation/edgeferry_lab_cam-1/object_new/config")[-1].payload == b""
    before = len(link.published)
    announcer.change()
    assert [p for p in link.published[before:] if p.payload == b"" and "/zone_" in p.topic] == []


def test_two_cameras_with_a_zone_door_get_a_door_sensor_each_on_their_own_sub_device() -> None:
    door = DetectionConfig.model_validate({"zones": {"door": {"coordinates": SQUARE}}})
    c = dict(detection_configs(TOPICS, "0.1.0", door, streams={"front": door, "back": door}))
    front = c["homeassistant/sensor/edgeferry_lab_cam-1/stream_5_front_zone_door/config"]
    back = c["homeassistant/binary_sensor/edgeferry_lab_cam-1/stream_4_back_zone_door_occupancy/config"]
    assert front["device"]["identifiers"] == ["edgeferry_lab_cam-1/front"]
    assert back["device"]["identifiers"] == ["edgeferry_lab_cam-1/back"]
    assert front["unique_id"] != c["homeassistant/sensor/edgeferry_lab_cam-1/stream_4_back_zone_door/config"][
        "unique_id"]
    report = TelemetryPayload.build(ENV, {}, zone_counts={"front:door": 1, "back:door": 0}).model_dump(mode="json")
    assert render(front["value_template"], report) == "1"
    assert render(back["value_template"], report) == "OFF"
    # No agent-wide 'door' entity that no report fills: each camera's zone is its own.
    assert "homeassistant/sensor/edgeferry_lab_cam-1/zone_door/config" not in c
