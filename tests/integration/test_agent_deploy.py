"""The agent end to end: real Mosquitto, a real store, real ONNX models, a file source."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.object_store import LocalStore
from tests.edge.media import write_video
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import (
    agent_config,
    running_agent,
    send_command,
    topics_of,
    write_public_key,
)

FRAMES = 150


@pytest.fixture
def keys() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _events(probe: MqttProbe, topic: str) -> list[dict]:
    return [m.json() for m in probe.on(topic)]


def test_serves_v1_then_deploy_swaps_to_v2_without_dropping_a_frame(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker
) -> None:
    make_package(store, "tiny", 1, keys, precisions=("fp32", "int8"))
    video = write_video(tmp_path / "cam.avi", FRAMES)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "video_file", "path": str(video), "policy": "all", "max_fps": 40},
        **{"sync.poll_interval_s": 60},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1,
                       20, "telemetry saying v1")
        state = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 10)
        assert state.json()["model"]["precision"] in {"fp32", "int8"}
        assert probe.wait_for(lambda m: m.topic == topics.status).text == "online"

        make_package(store, "tiny", 2, keys, bias=5.0)
        reply, took = send_command(probe, topics, "deploy", {"version": 2})
        assert reply["ok"], reply
        assert reply["result"]["version"] == 2
        assert took < 2.0, f"swap took {took:.2f}s"
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 2, 10)
        probe.wait_for(lambda m: m.topic == topics.events and m.json()["after"]["frame"] == FRAMES - 1, 30,
                       "the last frame's event")
        assert agent.frames.summary is None or agent.frames.summary.frames == FRAMES

    frames = [e["after"] for e in _events(probe, topics.events) if e["type"] == "frame"]
    indices = [f["frame"] for f in frames]
    assert indices == list(range(FRAMES)), "every frame of the file produced exactly one result, in order"
    versions = [f["model_version"] for f in frames]
    switch = versions.index(2)
    assert 0 < switch < FRAMES and set(versions[:switch]) == {1} and set(versions[switch:]) == {2}
    probe.wait_for(lambda m: m.topic == topics.status and m.text == "stopped", 10)
    late = MqttProbe(mosquitto, topics.status)
    assert late.wait_for(lambda m: m.topic == topics.status, 10).text == "stopped", "status is retained"


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        ({"corrupt": "model.fp32.onnx"}, "sha256"),
        ({"bad_signature": True}, "signature"),
        ({"traversal": "../evil.onnx"}, "unsafe file name"),
        ({"unsigned": True}, "unsigned"),
    ],
)
def test_hostile_package_is_refused_and_v1_keeps_serving(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker, hostile: dict, reason: str
) -> None:
    make_package(store, "tiny", 1, keys)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "synthetic", "width": 32, "height": 32, "fps": 50, "pattern": "noise"},
        **{"events.mode": "sample", "events.sample_every": 10, "sync.poll_interval_s": 60},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 20)
        make_package(store, "tiny", 2, keys, **hostile)
        reply, _ = send_command(probe, topics, "deploy", {"version": 2})
        assert not reply["ok"] and reason in reply["error"], reply
        before = len(probe.on(topics.events))
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("package_rejects", 0) >= 1, 10)
        later = probe.wait_count(topics.events, before + 3, 10)
        assert all(m.json()["after"]["model_version"] == 1 for m in later[before:])
        last_tel = probe.on(topics.telemetry)[-1].json()
        assert last_tel["model_version"] == 1


def test_polling_picks_up_a_new_version_and_rollback_returns(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker
) -> None:
    make_package(store, "tiny", 1, keys)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "synthetic", "width": 32, "height": 32, "fps": 30}, **{"events.mode": "off"},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 20)
        make_package(store, "tiny", 2, keys, bias=1.0)
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 2, 20,
                       "poll to install v2")
        reply, _ = send_command(probe, topics, "rollback", {})
        assert reply["ok"] and reply["result"]["version"] == 1, reply
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1, 10)
        ping, _ = send_command(probe, topics, "ping", {})
        assert ping["ok"] and ping["result"]["model"]["version"] == 1


def test_home_assistant_discovery_is_published_retained(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker
) -> None:
    make_package(store, "tiny", 1, keys)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "synthetic", "width": 32, "height": 32, "fps": 20}, **{"mqtt.ha_discovery": True},
    )
    topics = topics_of(tree)
    with running_agent(tree):
        probe = MqttProbe(mosquitto, "homeassistant/#", f"{topics.base}/telemetry")
        cfg = probe.wait_for(lambda m: m.topic.endswith("/e2e_ms_p99/config"), 20, "discovery config").json()
        assert cfg["state_topic"] == topics.telemetry and cfg["unit_of_measurement"] == "ms"
        tel = probe.wait_for(lambda m: m.topic == topics.telemetry and "e2e_ms_p99" in m.json(), 20).json()
        assert tel["e2e_ms_p99"] > 0
