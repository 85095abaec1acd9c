"""One agent serving two models on a real broker: a detector on two cameras and an anomaly model (`models:`) on an
MQTT sensor stream. Each model's results reach only its own task's topic under its own streams' names, the state
and each stream's figures say which model version serves it, a new version of the sensor model moves that model
alone while the detector's objects go on, a signed deploy naming the sensor model brings its old version back, and
a config whose streams name a model the device does not sync is refused before the agent starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge.ha_discovery import node_id
from edge.ha_streams import object_id
from shared.object_events import ObjectTopics
from shared.object_store import LocalStore
from shared.sensor_events import AnomalyAlertPayload, SensorTopics
from tests.edge.detection_package import Square, make_detection_package, write_scene
from tests.edge.package_factory import KeyPair, new_keypair
from tests.edge.sensor.anomaly_package import CHANNELS, HOP, anomaly_manifest, publish_anomaly_package
from tests.edge.test_ha_streams import render
from tests.fixtures.broker import Broker, MqttProbe, Received
from tests.fixtures.ports import free_port
from tests.integration.agent_harness import (
    agent_config,
    running_agent,
    send_command,
    topics_of,
    wait_until,
    write_public_key,
)

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]
DETECTOR, SENSOR_MODEL = "squares", "motions-anomaly"
CAMERAS, SENSOR = ("north", "south"), "imu"
# Readings per feed: normal, then a spike of 12 std on acc_y for six hops that the anomaly model alerts on.
ROWS, FAULT = 500, (300, 60)


def config(tmp_path: Path, broker: Broker, sensor_topic: str) -> tuple[dict[str, Any], LocalStore, KeyPair]:
    """The detector (sync.model) on two looping cameras that each show one standing object, the anomaly model of
    `models:` on the sensor stream; both at v1 in the store."""
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_detection_package(store, DETECTOR, 1, keys)
    publish_anomaly_package(store, keys.private)
    standing = [[Square(8, 8)] for _ in range(4)]
    cameras = [{"name": name, "source": {"type": "image_dir", "path": str(write_scene(tmp_path / name, standing)),
                                         "loop": True},
                "policy": "fifo", "stale_ms": None, "max_fps": 10} for name in CAMERAS]
    sensor = {"name": SENSOR, "model": SENSOR_MODEL, "policy": "fifo", "stale_ms": None, "ring_size": 64,
              "source": {"type": "sensor_mqtt", "topic": sensor_topic, "queue_size": 256}}
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, {},
        **{"sync.model": DETECTOR, "models": [{"name": SENSOR_MODEL}], "streams": [*cameras, sensor],
           "sensor.alerts": {"k": 3, "n": 5, "cooldown_s": 0}},
    )
    del tree["source"]
    return tree, store, keys


def readings(seed: int) -> np.ndarray:
    """ROWS readings of the model's normal data with one injected fault."""
    recipe = anomaly_manifest().window
    assert recipe is not None
    rows = np.random.default_rng(seed).normal(size=(ROWS, len(CHANNELS)))
    start, length = FAULT
    rows[start : start + length, 1] += 12.0
    return (rows * recipe.std + recipe.mean).astype(np.float64)


def feed(probe: MqttProbe, topic: str, rows: np.ndarray) -> None:
    """Readings as a device publishes them: a hop of rows per message, in order."""
    for at in range(0, len(rows), HOP):
        probe.publish(topic, json.dumps(rows[at : at + HOP].tolist()).encode())
        time.sleep(0.01)


def first_after(probe: MqttProbe, after: int, pred: Callable[[Received], bool], timeout: float,
                what: str) -> Received:
    """The first message from index `after` of the probe's messages on (seen so far or arriving) matching pred."""
    found: list[Received] = []

    def hit() -> bool:
        found[:] = [m for m in probe.messages[after:] if pred(m)][:1]
        return bool(found)

    wait_until(hit, timeout, what)
    return found[0]


def serving(probe: MqttProbe, tree: dict[str, Any], detector: int, sensor: int, after: int = 0) -> dict[str, Any]:
    """The first state (from index `after` of the probe's messages) that shows the detector at `detector` and the
    sensor model at `sensor`."""
    topics = topics_of(tree)

    def both(m: Received) -> bool:
        if m.topic != topics.state:
            return False
        state = m.json()
        models = state.get("models") or []
        return ((state.get("model") or {}).get("version") == detector and len(models) == 1
                and models[0].get("version") == sensor)

    return dict(first_after(probe, after, both, 60, f"state with {DETECTOR} v{detector} and {SENSOR_MODEL} "
                                                    f"v{sensor}").json())


def stream_figures(probe: MqttProbe, tree: dict[str, Any], versions: dict[str, int],
                   after: int = 0) -> dict[str, dict[str, float]]:
    """Per-stream figures of the first telemetry report (from index `after` of the probe's messages) where every
    stream is reported with the given model versions."""
    topics = topics_of(tree)

    def matches(m: Received) -> bool:
        if m.topic != topics.telemetry:
            return False
        streams = m.json().get("streams") or {}
        return set(streams) == set(versions) and all(
            streams[s].get("model_version") == v for s, v in versions.items())

    report = first_after(probe, after, matches, 30, f"telemetry with stream model versions {versions}")
    return dict(report.json()["streams"])


def alerts(probe: MqttProbe, tree: dict[str, Any]) -> list[AnomalyAlertPayload]:
    return [AnomalyAlertPayload.model_validate(m.json()) for m in probe.on(SensorTopics(topics_of(tree)).alerts)]


def object_events(probe: MqttProbe, tree: dict[str, Any]) -> list[dict[str, Any]]:
    return [m.json() for m in probe.on(ObjectTopics(topics_of(tree)).events)]


def new_objects(probe: MqttProbe, tree: dict[str, Any]) -> set[str]:
    """Cameras whose object was announced."""
    return {e["stream"] for e in object_events(probe, tree) if e["type"] == "new"}


def test_a_detector_on_two_cameras_and_an_anomaly_model_on_a_sensor_stream_each_serve_their_own_streams(
    tmp_path: Path, mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe]
) -> None:
    sensor_topic = f"sensors/{tmp_path.name[-8:]}/imu"
    tree, _, _ = config(tmp_path, mosquitto, sensor_topic)
    port = free_port()
    tree["daemon"] = {"prometheus_port": port}
    tree["mqtt"]["ha_discovery"] = True
    topics = topics_of(tree)
    ha_topic = f"homeassistant/sensor/{node_id(topics)}/{object_id(SENSOR, 'model_version')}/config"
    probe = mqtt_probe(mosquitto, f"{topics.base}/#", ha_topic)
    with running_agent(tree):
        state = serving(probe, tree, 1, 1)
        wait_until(lambda: new_objects(probe, tree) == set(CAMERAS), 60, "each camera's object")
        feed(probe, sensor_topic, readings(3))
        wait_until(lambda: [a.type for a in alerts(probe, tree)] == ["new", "end"], 30, "the fault's alert")
        mark = len(probe.messages)
        figures = stream_figures(probe, tree, {"north": 1, "south": 1, SENSOR: 1}, after=mark)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            scrape = resp.read().decode()
        ha = probe.wait_for(lambda m: m.topic == ha_topic and m.payload != b"", 20, "the sensor stream's HA sensor")
    detector, side = state["model"], state["models"][0]
    assert (detector["name"], detector["version"], detector["streams"]) == (DETECTOR, 1, list(CAMERAS))
    assert (side["name"], side["version"], side["streams"]) == (SENSOR_MODEL, 1, [SENSOR])
    # The detector's objects come from the cameras only, each under its own name; the alert names the sensor stream.
    assert {e["stream"] for e in object_events(probe, tree)} == set(CAMERAS)
    new, end = alerts(probe, tree)
    assert new.stream == end.stream == SENSOR and new.model_version == 1 and new.channels[0].channel == "acc_y"
    assert all(figures[name]["frames"] > 0 for name in (*CAMERAS, SENSOR)), figures
    # Prometheus and Home Assistant read each stream's model version too.
    versions = {s.labels["stream"]: s.value for f in text_string_to_metric_families(scrape)
                if f.name == "edgeferry_stream_model_version" for s in f.samples}
    assert versions == {"north": 1.0, "south": 1.0, SENSOR: 1.0}, versions
    assert float(render(ha.json()["value_template"], {"streams": figures})) == 1.0


def test_a_new_sensor_model_version_moves_that_model_alone_and_a_signed_deploy_naming_it_brings_v1_back(
    tmp_path: Path, mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe]
) -> None:
    sensor_topic = f"sensors/{tmp_path.name[-8:]}/imu"
    tree, store, keys = config(tmp_path, mosquitto, sensor_topic)
    topics = topics_of(tree)
    probe = mqtt_probe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        serving(probe, tree, 1, 1)
        wait_until(lambda: new_objects(probe, tree) == set(CAMERAS), 60, "each camera's object")
        before = stream_figures(probe, tree, {"north": 1, "south": 1, SENSOR: 1})
        publish_anomaly_package(store, keys.private, version=2)
        moved = serving(probe, tree, 1, 2)
        mark = len(probe.messages)
        during = stream_figures(probe, tree, {"north": 1, "south": 1, SENSOR: 2}, after=mark)
        # Version 2 scores the sensor stream: a fault now alerts under it.
        feed(probe, sensor_topic, readings(5))
        wait_until(lambda: [a.type for a in alerts(probe, tree)] == ["new", "end"], 30, "the fault's alert")
        # A signed deploy of v1 naming the sensor model (a downgrade, so allowed explicitly) brings it back.
        mark = len(probe.messages)
        reply, _ = send_command(probe, topics, "deploy",
                                {"model": SENSOR_MODEL, "version": 1, "allow_downgrade": True})
        assert reply["ok"], reply
        back = serving(probe, tree, 1, 1, after=mark)
        mark = len(probe.messages)
        after = stream_figures(probe, tree, {"north": 1, "south": 1, SENSOR: 1}, after=mark)
        unknown, _ = send_command(probe, topics, "deploy", {"model": "no-such-model", "version": 1})
        pinned, _ = send_command(probe, topics, "deploy", {"model": SENSOR_MODEL, "version": 2, "pin": True})
        last_state = probe.on(topics.state)[-1].json()
        events = object_events(probe, tree)  # before the stop, which ends every object
    assert (reply["result"]["model"], reply["result"]["version"]) == (SENSOR_MODEL, 1), reply
    assert moved["model"]["version"] == 1 and moved["models"][0]["streams"] == [SENSOR]
    assert back["model"]["version"] == 1 and back["models"][0]["version"] == 1
    # The detector kept running through both swaps of the sensor model: its cameras' frames went on and their
    # standing objects were never ended and announced again (the detector's tracking was not restarted).
    for name in CAMERAS:
        assert before[name]["frames"] < during[name]["frames"] < after[name]["frames"], (before, during, after)
    assert sorted(e["stream"] for e in events if e["type"] == "new") == sorted(CAMERAS), events
    assert not [e for e in events if e["type"] == "end"], events
    new, _ = alerts(probe, tree)
    assert new.stream == SENSOR and new.model_version == 2
    assert not unknown["ok"] and "no-such-model" in unknown["error"], unknown
    assert DETECTOR in unknown["error"] and SENSOR_MODEL in unknown["error"], unknown
    assert not pinned["ok"] and "pin" in pinned["error"] and SENSOR_MODEL in pinned["error"], pinned
    # Neither refused deploy changed what serves.
    assert (last_state["model"]["version"], last_state["models"][0]["version"]) == (1, 1), last_state


@pytest.mark.parametrize(
    ("models", "stream_model", "says"),
    [
        ([], "motions", "motions"),
        ([{"name": "vibration"}], "motions", "motions"),
        ([{"name": "vibration"}], None, "vibration"),
    ],
    ids=["no-models", "not-listed", "model-without-stream"],
)
def test_streams_and_models_that_do_not_match_stop_the_agent_with_one_line(
    tmp_path: Path, models: list[dict[str, str]], stream_model: str | None, says: str
) -> None:
    cam = {"name": "gate", "source": {"type": "synthetic", "width": 16, "height": 16, "fps": 5}}
    sensor = {"name": SENSOR, "source": {"type": "sensor_mqtt", "topic": "sensors/x"}, "model": stream_model}
    tree = {"sync": {"model": "tiny", "store": {"uri": str(tmp_path / "store")}, "cache_dir": str(tmp_path / "c")},
            "mqtt": {"enabled": False}, "streams": [cam, sensor], "models": models}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(tree))
    run = subprocess.run([*EDGEFERRY, "agent", "--config", str(path), "--duration", "2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    # One line that names the model at fault and where to fix it (`models:`).
    assert len(errors) == 1 and says in errors[0] and "models:" in errors[0], run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "c").exists(), "nothing was fetched"
