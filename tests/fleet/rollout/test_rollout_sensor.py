"""Sensor model rollouts on real agents (issue 18): real Mosquitto, the real `edgeferry fleet serve`, two real agents
serving a tiny signed anomaly package windowed from one MQTT sensor topic of normal readings, and the default plan
an anomaly model gets by its task (its gates as they ship, on a test's timescale).

Version 2 is the same model with a broken calibration: its threshold sits at a hundredth of normal scores, so every
window is over it. It passes every check its own package carries, but against the control device its score
distribution (in threshold units) and its alert rate are far off, and its window shadow disagrees with version 1:
it is rolled back at the canary stage. The same model with the same threshold, republished as version 2, promotes
through every stage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.rollout.task_gates import default_plan_for
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, version_prefix
from shared.object_store import ObjectStore
from shared.signing import sign
from tests.edge.package_factory import KeyPair, new_keypair
from tests.edge.sensor.anomaly_package import (
    CHANNELS,
    HOP,
    anomaly_manifest,
    build_anomaly_package,
    publish_anomaly_package,
)
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually
from tests.fleet.rollout.test_rollout_e2e import ControlPlane, _kinds
from tests.integration.agent_harness import agent_config, running_agent, write_public_key

MODEL = "motions-anomaly"
BROKEN_THRESHOLD = 0.01  # normal windows score about 1 in this model
# The default plan's gates, margins and minimum samples as they ship, on a timescale a test can wait for: at 0.5 s
# telemetry and ~20 windows/s, a 20 s window holds 40 telemetry windows (12 needed) and ~400 scored windows (200).
TIMING = {"soak_s": 15, "analysis_interval_s": 1, "window_s": 20, "device_deadline_s": 30, "deadline_s": 150}
SCORE_PSI, ALERT_RATE = "score psi <= 0.25", "mean anomaly_alert_rate - control <= 10"
SHADOW, SCORE_DIFF = "mean shadow_agreement >= 0.9", "mean shadow_score_diff <= 0.25"


def publish_version(store: ObjectStore, key: Ed25519PrivateKey, version: int, **kw: Any) -> None:
    """A version in the store for a rollout to ship, without moving latest.json (publishing bypasses nothing)."""
    manifest, files = build_anomaly_package(MODEL, version, **kw)
    prefix = version_prefix(MODEL, version)
    for name, data in files.items():
        store.put(prefix + name, data)
    body = manifest.to_bytes()
    store.put(prefix + SIGNATURE_FILE, sign(body, key))
    store.put(prefix + MANIFEST_FILE, body)


@contextmanager
def sensor_feed(broker: Broker, topic: str, rate_hz: float = 20.0) -> Iterator[None]:
    """Normal readings on one MQTT sensor topic, a hop of rows per message, until the block ends."""
    recipe = anomaly_manifest().window
    assert recipe is not None
    probe = MqttProbe(broker)
    stop = threading.Event()
    rng = np.random.default_rng(11)

    def run() -> None:
        while not stop.is_set():
            rows = rng.normal(size=(HOP, len(CHANNELS))) * recipe.std + recipe.mean
            probe.client.publish(topic, json.dumps(rows.tolist()).encode(), qos=0)
            stop.wait(1 / rate_hz)

    thread = threading.Thread(target=run, name="sensor-feed", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        probe.client.loop_stop()
        probe.client.disconnect()


@pytest.fixture
def keys() -> KeyPair:
    return new_keypair()


@pytest.fixture
def plane(tmp_path: Path, mosquitto: Broker, keys: KeyPair) -> Iterator[ControlPlane]:
    p = ControlPlane(tmp_path, mosquitto, model=MODEL)
    # The control plane's packages become anomaly models, signed by a key its config and the agents trust.
    write_public_key(keys, p.pkg_pub)
    publish_anomaly_package(p.pkg, keys.private, version=1)
    try:
        yield p
    finally:
        p.close()


def plan_file(tmp: Path) -> Path:
    data = default_plan_for("anomaly").model_dump(mode="json")
    for stage in data["stages"]:
        stage.update(TIMING)
    path = tmp / "sensor-plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def two_sensor_agents(plane: ControlPlane) -> Iterator[list[str]]:
    """Two real agents windowing the same sensor topic, the canary shadow check on, assigned to group north."""
    topic = f"sensors/{plane.tmp.name[-8:]}/imu"
    source = {"type": "sensor_mqtt", "topic": topic, "window": 7, "stride": 7, "policy": "all", "queue_size": 64}
    trees = []
    for i in range(2):
        home = plane.tmp / f"agent{i}"
        home.mkdir()
        trees.append(agent_config(home, plane.pkg, plane.pkg_pub, plane.broker, source, **{
            "sync.model": MODEL, "events.mode": "off", "device.groups": ["north"], "sync.poll_interval_s": 60,
            "sync.shadow_every": 2, "sensor.alerts": {"k": 3, "n": 5, "cooldown_s": 0}}))
    plane.start_serve()
    with sensor_feed(plane.broker, topic), running_agent(trees[0]), running_agent(trees[1]):
        plane.ready(2)
        time.sleep(TIMING["window_s"] / 2)  # history for the group's baseline
        yield [t["device"]["device_id"] for t in trees]


def test_a_sensor_model_with_a_broken_threshold_is_rolled_back_at_the_first_stage(plane: ControlPlane,
                                                                                   keys: KeyPair) -> None:
    publish_version(plane.pkg, keys.private, 2, variant_threshold=BROKEN_THRESHOLD)
    with two_sensor_agents(plane) as agents:
        plane.start_rollout(plan_file(plane.tmp))
        st = plane.finished(180)
        assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
        assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)
        gates = {g["gate"]: g for g in st["gates"]}
        failed = {name for name, g in gates.items() if g["status"] == "fail"}
        # Whichever sensor gate has its minimum sample first decides; no health gate fails a working agent.
        assert failed & {SCORE_PSI, ALERT_RATE} and failed <= {SCORE_PSI, ALERT_RATE, SHADOW, SCORE_DIFF}, st["gates"]
        if ALERT_RATE in failed:
            assert gates[ALERT_RATE]["canary"] > 900, gates[ALERT_RATE]  # every window over the broken threshold
        if SCORE_PSI in failed:
            assert gates[SCORE_PSI]["evidence"]["low"] > 0.25, gates[SCORE_PSI]
        assert _kinds(plane)[-1] == "rollback"
        eventually(lambda: all(plane.versions()[a] == 1 for a in agents), 60, "both real agents on version 1")


def test_the_same_model_with_the_same_threshold_promotes_through_every_stage(plane: ControlPlane,
                                                                              keys: KeyPair) -> None:
    publish_version(plane.pkg, keys.private, 2)
    with two_sensor_agents(plane) as agents:
        plane.start_rollout(plan_file(plane.tmp))
        st = plane.finished(240)
        assert st["state"] == "completed", (st["last_reason"], st["gates"], plane.serve_log())
        assert _kinds(plane) == ["start", "advance", "advance", "complete"]
        eventually(lambda: all(plane.versions()[a] == 2 for a in agents), 60, "both real agents on version 2")
