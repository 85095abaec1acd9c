"""The rollout shadow check end to end: a real agent, real Mosquitto, real ONNX packages, telemetry on the broker."""

from __future__ import annotations

from pathlib import Path

from shared.object_store import LocalStore
from tests.edge.media import write_video
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, send_command, topics_of, write_public_key


def _agreement_of(probe: MqttProbe, topic: str, version: int) -> float:
    """Pooled agreement over telemetry windows that compared frames while `version` was served."""
    frames = agreed = 0.0
    for m in probe.on(topic):
        t = m.json()
        if t.get("model_version") == version and t.get("shadow_frames"):
            frames += t["shadow_frames"]
            agreed += t["shadow_frames"] * t["shadow_agreement"]
    assert frames > 0, f"no shadow frames reported while v{version} was served"
    return agreed / frames


def _wait_shadow_frames(probe: MqttProbe, topic: str, version: int, at_least: float) -> None:
    def enough(_: object) -> bool:
        return sum(m.json().get("shadow_frames", 0) for m in probe.on(topic)
                   if m.json().get("model_version") == version) >= at_least

    probe.wait_for(lambda m: m.topic == topic and enough(m), 30, f"{at_least} shadow frames on v{version}")


def test_a_canary_reports_agreement_with_the_version_it_replaced(tmp_path: Path, mosquitto: Broker) -> None:
    store, keys = LocalStore(tmp_path / "store"), new_keypair()
    make_package(store, "tiny", 1, keys)
    video = write_video(tmp_path / "cam.avi", 300)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "video_file", "path": str(video), "policy": "all", "max_fps": 60, "loop": True},
        **{"sync.poll_interval_s": 60, "sync.shadow_every": 2},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1, 20, "v1")
        # Nothing to compare against yet: v1 replaced nothing.
        assert all("shadow_frames" not in m.json() for m in probe.on(topics.telemetry))

        make_package(store, "tiny", 2, keys)  # the same weights: the same top-1 on every frame
        reply, _ = send_command(probe, topics, "deploy", {"version": 2})
        assert reply["ok"], reply
        assert agent.shadow.shadow_version == 1
        _wait_shadow_frames(probe, topics.telemetry, 2, 20)
        assert _agreement_of(probe, topics.telemetry, 2) == 1.0

        make_package(store, "tiny", 3, keys, bias=50.0)  # class 0 wins every frame now
        reply, _ = send_command(probe, topics, "deploy", {"version": 3})
        assert reply["ok"], reply
        assert agent.shadow.shadow_version == 2
        _wait_shadow_frames(probe, topics.telemetry, 3, 20)
        assert _agreement_of(probe, topics.telemetry, 3) < 0.9
    assert agent.shadow.shadow_version is None
