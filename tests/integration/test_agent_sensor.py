"""A sensor agent end to end over real Mosquitto: it syncs, verifies and golden-checks a tiny signed anomaly package,
windows an MQTT sensor topic by the model's recipe, and alerts within k windows of each injected fault, ends the
alert after it, raises none on normal data, and reports the score with its threshold and the alert count; a new
version hot-swapped in mid-stream alerts at its own calibrated threshold without a break in the windows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from shared.object_store import LocalStore
from shared.sensor_events import AnomalyAlertPayload, SensorTopics
from tests.edge.package_factory import new_keypair
from tests.edge.sensor.anomaly_package import (
    CHANNELS,
    HOP,
    THRESHOLD,
    WINDOW,
    anomaly_manifest,
    publish_anomaly_package,
)
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, topics_of, write_public_key

K, N = 3, 5
# (first faulty row, rows after it): a spike of 12 std on acc_y for six hops, twice, on normal data.
FAULTS = ((400, 60), (900, 60))
ROWS = 1300
# Version 2 is swapped in between the faults, with a calibrated threshold of its own.
SWAP_ROW, V2_THRESHOLD = 650, 4.0


def readings(rng: np.random.Generator) -> np.ndarray:
    recipe = anomaly_manifest().window
    assert recipe is not None
    normal = rng.normal(size=(ROWS, len(CHANNELS)))
    for start, length in FAULTS:
        normal[start : start + length, 1] += 12.0
    return (normal * recipe.std + recipe.mean).astype(np.float64)


def feed(probe: MqttProbe, topic: str, rows: np.ndarray, start: int, stop: int) -> None:
    """Readings as a device publishes them: a hop of rows per message, in order."""
    for at in range(start, stop, HOP):
        probe.publish(topic, json.dumps(rows[at : min(at + HOP, stop)].tolist()).encode())
        time.sleep(0.01)


def first_window_with(row: int) -> int:
    """Index of the first window (rows [HOP*i, HOP*i + WINDOW)) that holds this row."""
    return max(0, (row - WINDOW) // HOP + 1)


def test_alerts_fire_within_k_windows_of_each_fault_clear_after_it_and_never_on_normal_data(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    publish_anomaly_package(store, keys.private)
    topic = f"sensors/{tmp_path.name[-8:]}/imu"
    source = {"type": "sensor_mqtt", "topic": topic, "window": 7, "stride": 7, "policy": "all", "queue_size": 256}
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, source,
                        **{"sync.model": "motions-anomaly", "sensor.alerts": {"k": K, "n": N, "cooldown_s": 0}})
    topics = topics_of(tree)
    alerts_topic = SensorTopics(topics).alerts
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    rows = readings(np.random.default_rng(3))
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == topics.state and (m.json().get("model") or {}).get("version") == 1, 30,
                       "the anomaly model served")
        probe.publish(topic, b'[[1, 2]]')  # malformed: two values where the recipe has three channels
        feed(probe, topic, rows, 0, SWAP_ROW)
        probe.wait_for(lambda m: m.topic == alerts_topic and m.json()["type"] == "end", 30, "the first fault's end")
        # A new version with its own calibrated threshold is hot-swapped in mid-stream; the windows go on unbroken.
        publish_anomaly_package(store, keys.private, version=2, variant_threshold=V2_THRESHOLD)
        probe.wait_for(lambda m: m.topic == topics.state and (m.json().get("model") or {}).get("version") == 2, 30,
                       "version 2 served")
        feed(probe, topic, rows, SWAP_ROW, ROWS)
        last = (ROWS - WINDOW) // HOP
        probe.wait_for(lambda m: m.topic == alerts_topic and m.json()["type"] == "end"
                       and m.json()["window"] > first_window_with(FAULTS[1][0]), 30, "the second fault's end")
        tel = probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("anomaly_alerts") == 2, 15,
                             "telemetry counting both alerts").json()
    alerts = [AnomalyAlertPayload.model_validate(m.json()) for m in probe.on(alerts_topic)]
    assert [a.type for a in alerts] == ["new", "end", "new", "end"]
    for (start, length), new, end, version, threshold in zip(
        FAULTS, alerts[::2], alerts[1::2], (1, 2), (THRESHOLD, V2_THRESHOLD), strict=True
    ):
        first = first_window_with(start)
        last_faulty = (start + length - 1) // HOP
        assert first <= new.window < first + K, "fires within k windows of the fault"
        assert last_faulty < end.window <= last_faulty + N, "ends within n windows after the fault"
        assert new.alert_id == end.alert_id and new.threshold == threshold and new.k == K and new.n == N
        assert new.channels[0].channel == "acc_y" and new.model_version == end.model_version == version
        assert new.window <= last
    assert tel["anomaly_threshold"] == V2_THRESHOLD and tel["sensor_input_refused"] >= 1
