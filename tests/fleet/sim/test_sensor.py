"""The simulator plays sensor devices: anomaly figures every report, an alert per injected fault that clears after
it, none on normal data, and a new version with a broken threshold that alerts; over real Mosquitto too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleet.errors import SimulatorError
from fleet.sim.runner import SimOptions, ThreadedSimulation
from fleet.sim.sensor import FAULT_EVERY, SensorSim, assign_sensor, parse_sensor_mix
from shared.payloads import Envelope, TelemetryPayload
from shared.sensor_events import AnomalyAlertPayload, SensorTopics
from shared.topics import DeviceTopics
from tests.fixtures.broker import Broker, MqttProbe

ENVELOPE = {"device_id": "s-1", "boot_id": "b1", "seq": 1, "ts": 1_700_000_000_000}


def run(sim: SensorSim, reports: int, new_version: bool = False) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    figures, events = [], []
    for i in range(reports):
        f, e = sim.tick(new_version, 1.0, 1_700_000_000_000 + i * 1000)
        figures.append(f)
        events.extend(e)
    return figures, events


def test_a_faulty_device_alerts_once_per_fault_and_clears_after_it() -> None:
    sim = SensorSim("faulty", "seed")
    figures, events = run(sim, 310)  # 1240 windows: 10 whole faults (windows 100-119, 220-239, ...)
    assert [e["type"] for e in events] == ["new", "end"] * (1240 // FAULT_EVERY)
    for e in events:
        AnomalyAlertPayload.model_validate({**ENVELOPE, **e})
    assert all(TelemetryPayload.build(Envelope(**ENVELOPE), f) for f in figures)
    assert max(f["anomaly_alerts_active"] for f in figures) == 1 and figures[-1]["anomaly_alerts"] == 10


def test_a_normal_device_never_alerts_and_reports_scores_under_its_threshold() -> None:
    figures, events = run(SensorSim("normal", "seed"), 500)
    assert events == []
    assert all(f["anomaly_score_p50"] < f["anomaly_threshold"] for f in figures)
    assert {f["sensor_window_rate"] for f in figures} == {4.0}


@pytest.mark.parametrize(("behaviour", "alerts"), [("broken_threshold", True), ("drifting", None), ("normal", False)])
def test_new_versions_of_broken_or_drifting_sensors_show_it(behaviour: str, alerts: bool | None) -> None:
    old, _ = run(SensorSim(behaviour, "s"), 50)  # type: ignore[arg-type]
    new, events = run(SensorSim(behaviour, "s"), 50, new_version=True)  # type: ignore[arg-type]
    if alerts is not None:
        assert bool(events) is alerts
    median = lambda fs: sorted(f["anomaly_score_p50"] for f in fs)[len(fs) // 2]  # noqa: E731
    if behaviour == "drifting":
        assert median(new) > 1.5 * median(old)
    if behaviour == "broken_threshold":
        assert new[0]["anomaly_threshold"] < old[0]["anomaly_threshold"]


def test_sensor_mixes_are_parsed_and_assigned_exactly() -> None:
    kinds = assign_sensor(parse_sensor_mix("faulty=0.25"), 8)
    assert sorted(kinds).count("faulty") == 2 and kinds.count("normal") == 6
    with pytest.raises(SimulatorError, match="bad sensor behaviour"):
        parse_sensor_mix("smelly=1")


@pytest.fixture
def sensor_sim(mosquitto: Broker) -> Iterator[ThreadedSimulation]:
    host = ThreadedSimulation(SimOptions(devices=2, host=mosquitto.host, port=mosquitto.port, fleet="sens",
                                         rate_hz=10.0, sensor="faulty=1", keepalive_s=5))
    yield host
    host.stop()


def test_simulated_sensor_devices_publish_anomaly_telemetry_and_alerts_over_mosquitto(
    mosquitto: Broker, sensor_sim: ThreadedSimulation
) -> None:
    probe = MqttProbe(mosquitto, "edgeferry/sens/+/telemetry", "edgeferry/sens/+/sensor/alerts")
    try:
        probe.wait_subscribed()
        sim = sensor_sim.start()
        device = sim.devices[0]
        alerts_topic = SensorTopics(DeviceTopics("sens", device.device_id)).alerts
        # 10 reports/s of 20 windows each: the first fault (windows 100-119) comes within a second.
        assert device.sensor is not None
        device.sensor.window_rate = 200.0
        tel = probe.wait_for(lambda m: m.topic == device.topics.telemetry, 10, "telemetry").json()
        assert tel["anomaly_threshold"] == 1.0 and "anomaly_score_p95" in tel
        TelemetryPayload.model_validate(tel)
        new = probe.wait_for(lambda m: m.topic == alerts_topic and m.json()["type"] == "new", 20, "an alert")
        end = probe.wait_for(lambda m: m.topic == alerts_topic and m.json()["type"] == "end", 20, "its end")
        first, last = AnomalyAlertPayload.model_validate(new.json()), AnomalyAlertPayload.model_validate(end.json())
        assert first.alert_id == last.alert_id and first.score > first.threshold and len(first.channels) == 3
    finally:
        probe.close()
