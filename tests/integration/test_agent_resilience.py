"""No command can widen what a device trusts, and no background thread failure silences it (real broker, agent)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.config import AgentConfig
from edge.events import EventEmitter
from edge.pipeline import Pipeline
from shared.object_store import LocalStore
from tests.edge.media import write_video
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import (
    HW,
    agent_config,
    running_agent,
    send_command,
    topics_of,
    write_public_key,
)

ANCHORS: dict[str, Any] = {
    "sync.allow_unsigned": True,
    "sync.trusted_keys": ["{attacker}"],
    "sync.store.uri": "{elsewhere}",
    "device.command_keys": ["{attacker}"],
    "device.allow_unsigned_commands": True,
    "mqtt.host": "attacker.invalid",
    "mqtt.username": "someone",
    "daemon.prometheus_host": "0.0.0.0",
}


@pytest.fixture
def keys() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _synthetic() -> dict[str, Any]:
    return {"type": "synthetic", "width": 8, "height": 8, "fps": 50}


def test_no_trust_anchor_changes_by_command_and_untrusted_packages_stay_refused(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker
) -> None:
    make_package(store, "tiny", 1, keys)
    attacker = new_keypair()
    attacker_pub = write_public_key(attacker, tmp_path / "attacker.pub")
    elsewhere = LocalStore(tmp_path / "elsewhere")
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, _synthetic(),
                        **{"sync.poll_interval_s": 0.3})
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 20, "v1 served")
        for key, value in ANCHORS.items():
            if isinstance(value, list):
                value = [str(attacker_pub)]
            elif value == "{elsewhere}":
                value = str(elsewhere.root)
            reply, _ = send_command(probe, topics, "set-config", {"values": {key: value}})
            assert not reply["ok"], (key, reply)
            assert key in reply["error"] and "local config file" in reply["error"]
        assert not agent.cfg.sync.allow_unsigned and agent.cfg.sync.trusted_keys == tree_keys(tree)

        make_package(store, "tiny", 2, keys, unsigned=True)
        make_package(store, "tiny", 3, attacker)
        for version in (2, 3):
            reply, _ = send_command(probe, topics, "deploy", {"version": version})
            assert not reply["ok"], reply
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("package_rejects", 0) >= 2, 10,
                       "rejects counted")
        current = agent.slot.current
        assert current is not None and current.version == 1


def tree_keys(tree: dict[str, Any]) -> list[Path]:
    return [Path(p) for p in tree["sync"]["trusted_keys"]]


class FailOnce:
    """Wraps a callable so its first call raises; later calls pass through."""

    def __init__(self, real: Any, exc: BaseException) -> None:
        self.real, self.exc = real, exc
        self.failed = threading.Event()

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if not self.failed.is_set():
            self.failed.set()
            raise self.exc
        return self.real(*args, **kw)


def test_frames_results_and_poll_threads_each_fail_once_and_carry_on(
    tmp_path: Path, store: LocalStore, keys: KeyPair, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(store, "tiny", 1, keys)
    video = write_video(tmp_path / "cam.avi", 400)
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
                        {"type": "video_file", "path": str(video), "policy": "all", "max_fps": 60, "loop": True},
                        **{"sync.poll_interval_s": 0.3})
    topics = topics_of(tree)
    pipeline_run = FailOnce(Pipeline.run, RuntimeError("injected frame-loop failure"))
    on_result = FailOnce(EventEmitter.on_result, KeyError("injected results failure"))
    monkeypatch.setattr(Pipeline, "run", lambda self, *a, **kw: pipeline_run(self, *a, **kw))
    monkeypatch.setattr(EventEmitter, "on_result", lambda self, *a, **kw: on_result(self, *a, **kw))
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        poll = FailOnce(agent.sync.check_latest, OSError(errno.ENOSPC, "No space left on device"))
        monkeypatch.setattr(agent.sync, "check_latest", poll)
        for injected in (pipeline_run, on_result, poll):
            assert injected.failed.wait(20), "every injected failure was reached"
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("thread_errors", 0) >= 3, 20,
                       "three thread failures counted")
        assert agent.health.errors("frames") == 1
        assert agent.health.errors("results") == 1
        assert agent.health.errors("model-poll") == 1
        # Frames keep flowing and are published after the failures.
        frames_then = agent.stats.frames
        probe.wait_for(lambda m: m.topic == topics.events and m.json()["after"]["frame"] >= 0, 10)
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("frames", 0) > frames_then + 20, 20,
                       "frames after the failures")
        # The poll thread still finds a new version.
        make_package(store, "tiny", 2, keys, bias=3.0)
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 2, 30,
                       "v2 picked up by the recovered poll thread")
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 2
                       and m.json()["degraded"] == {}, 10, "state no longer degraded")
        degraded = [m.json()["degraded"] for m in probe.on(topics.state) if m.json()["degraded"]]
        assert degraded, "the state payload reported the failing components while they failed"


def test_run_duration_counts_from_start_while_no_model_is_served(tmp_path: Path, store: LocalStore,
                                                                 keys: KeyPair, mosquitto: Broker) -> None:
    # An empty store: nothing is ever served, and the bounded run still ends on time.
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, _synthetic(),
                        **{"run.duration_s": 1.5})
    agent = Agent(AgentConfig.model_validate(tree), hardware=HW)
    agent.start()
    try:
        runner = threading.Thread(target=agent.run, daemon=True)
        runner.start()
        runner.join(20)
        assert not runner.is_alive(), "run() returned once run.duration_s passed"
        assert agent.slot.current is None
    finally:
        agent.request_stop()
        agent.stop()
