"""Zone alert rules: a label standing in a detector's zone longer than N seconds fires, not before; leaving the zone,
the object's end or the device going offline ends it; and end to end, object events over real Mosquitto become a
retained alert on the broker once the time has passed."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from dashboards.web.alerts import evaluate
from dashboards.web.config import WebConfig, ZoneRule
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.live import LiveHub
from dashboards.web.mqtt_feed import MqttFeed
from dashboards.web.objects import ObjectBuffer
from dashboards.web.ports import DeviceRow
from tests.dashboards.web.fakes import FakeFleet
from tests.dashboards.web.object_payloads import NOW, Detector
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually

LOITER = ZoneRule(kind="zone", name="driveway_person", zone="driveway", labels=["person"], for_s=30)


def online(*ids: str, status: str = "online") -> list[DeviceRow]:
    return [DeviceRow(device_id=d, fleet="lab", status=status, last_seen_ms=NOW) for d in ids]  # type: ignore[arg-type]


def objects_with(*events: bytes, device: str = "cam-1") -> ObjectBuffer:
    buf = ObjectBuffer()
    for e in events:
        buf.add_event(device, e)
    return buf


def test_a_person_in_the_zone_fires_after_n_seconds_and_not_before() -> None:
    det = Detector("cam-1")
    buf = objects_with(det.event("new", "1-1", "person", NOW, ["driveway"]),
                       det.event("update", "1-1", "person", NOW + 10_000, ["driveway", "porch"]))
    assert evaluate([LOITER], online("cam-1"), {}, [], NOW + 30_000, buf.occupants()) == []
    [alert] = evaluate([LOITER], online("cam-1"), {}, [], NOW + 31_000, buf.occupants())
    assert (alert.rule, alert.device_id, alert.kind, alert.value, alert.threshold) == (
        "driveway_person", "cam-1", "zone", 31.0, 30.0)
    assert alert.message == "person 1-1 in zone driveway for 31 s (limit 30 s)"


def test_other_labels_other_zones_and_short_stays_do_not_fire() -> None:
    det = Detector("cam-1")
    buf = objects_with(det.event("new", "1-1", "car", NOW, ["driveway"]),
                       det.event("new", "1-2", "person", NOW, ["porch"]),
                       det.event("new", "1-3", "person", NOW + 50_000, ["driveway"]))
    assert evaluate([LOITER], online("cam-1"), {}, [], NOW + 60_000, buf.occupants()) == []
    anything = ZoneRule(kind="zone", name="any", zone="driveway", for_s=30)
    [alert] = evaluate([anything], online("cam-1"), {}, [], NOW + 60_000, buf.occupants())
    assert alert.message.startswith("car 1-1 in zone driveway for 60 s")  # the longest there


@pytest.mark.parametrize("leaves", ["end", "out of the zone"])
def test_leaving_the_zone_or_ending_stops_it(leaves: str) -> None:
    det = Detector("cam-1")
    buf = objects_with(det.event("new", "1-1", "person", NOW, ["driveway"]),
                       det.event("end", "1-1", "person", NOW + 40_000, ["driveway"]) if leaves == "end"
                       else det.event("update", "1-1", "person", NOW + 40_000, ["porch"]))
    assert evaluate([LOITER], online("cam-1"), {}, [], NOW + 60_000, buf.occupants()) == []


def test_an_offline_device_never_sends_end_so_its_objects_do_not_fire() -> None:
    buf = objects_with(Detector("cam-1").event("new", "1-1", "person", NOW, ["driveway"]))
    assert evaluate([LOITER], online("cam-1", status="offline"), {}, [], NOW + 60_000, buf.occupants()) == []


def test_a_zone_rule_needs_a_valid_zone_name_and_a_positive_time() -> None:
    with pytest.raises(ValidationError, match="zone name"):
        WebConfig.model_validate({"alerts": [{"kind": "zone", "name": "x", "zone": "a/b", "for_s": 5}]})
    with pytest.raises(ValidationError, match="greater than 0"):
        WebConfig.model_validate({"alerts": [{"kind": "zone", "name": "x", "zone": "a", "for_s": 0}]})


def test_object_events_over_mosquitto_raise_a_retained_zone_alert_after_n_seconds(mosquitto: Broker) -> None:
    clock = [NOW]
    fleet = FakeFleet(clock_ms=lambda: clock[0])
    fleet.add_device("cam-1")
    objects = ObjectBuffer(known=lambda d: fleet.device(d) is not None)
    feed = MqttFeed("lab", mosquitto.host, mosquitto.port, EventBuffer(), FigureBuffer(), objects=objects)
    feed.start()
    witness = MqttProbe(mosquitto, "edgeferry/lab/alerts/#")
    probe = MqttProbe(mosquitto)
    det = Detector("cam-1")
    topic = "edgeferry/lab/alerts/driveway_person/cam-1"

    def at(ms: int) -> None:
        clock[0] = ms
        fleet.telemetry("cam-1", {"fps": 10.0}, ts_ms=ms)  # the device stays online

    async def run() -> None:
        hub = LiveHub(fleet, 0.05, [LOITER], alert_sink=feed.publish_alerts, clock_ms=lambda: clock[0],
                      objects=objects)
        await hub.start()
        try:
            probe.publish("edgeferry/lab/cam-1/objects/events",
                          det.event("new", "1-1", "person", NOW, ["driveway"]))
            probe.publish("edgeferry/lab/who-9/objects/events",  # not in the registry: never kept
                          Detector("who-9").event("new", "1-1", "person", NOW, ["driveway"]))
            await asyncio.to_thread(eventually, lambda: objects.occupants(), 10, "object in the zone")
            at(NOW + 29_000)
            await asyncio.sleep(0.5)  # ten ticks at 29 s: nothing fires
            assert hub.alerts() == [] and witness.on(topic) == []
            at(NOW + 31_000)
            await asyncio.to_thread(witness.wait_for, lambda m: m.topic == topic and b"firing" in m.payload,
                                    10, "firing zone alert")
            probe.publish("edgeferry/lab/cam-1/objects/events",
                          det.event("end", "1-1", "person", NOW + 32_000, ["driveway"]))
            await asyncio.to_thread(witness.wait_for, lambda m: m.topic == topic and m.payload == b"",
                                    10, "zone alert cleared")
        finally:
            await hub.stop()

    try:
        asyncio.run(run())
        [firing] = [json.loads(m.payload) for m in witness.on(topic) if b"firing" in m.payload]
        assert firing["kind"] == "zone" and firing["value"] == 31.0 and "person 1-1" in firing["message"]
        assert [m.topic for m in witness.messages if "who-9" in m.topic] == [] and objects.not_known == 1
    finally:
        probe.close()
        witness.close()
        feed.stop()
