"""The rollout shadow check on an agent serving `streams:`: a real agent, real Mosquitto, real ONNX packages; a
canary reports its agreement with the version it replaced from its cameras' frames, as a single-source one does."""

from __future__ import annotations

from pathlib import Path

from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, send_command, topics_of, write_public_key
from tests.integration.test_agent_shadow import _agreement_of, _wait_shadow_frames


def test_a_canary_serving_two_cameras_reports_agreement_with_the_version_it_replaced(
    tmp_path: Path, mosquitto: Broker
) -> None:
    store, keys = LocalStore(tmp_path / "store"), new_keypair()
    make_package(store, "tiny", 1, keys)
    cameras = (("gate", "digits"), ("yard", "bars"))
    streams = [{"name": name, "source": {"type": "synthetic", "width": 32, "height": 32, "fps": 30, "pattern": pattern}}
               for name, pattern in cameras]
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, {},
                        **{"streams": streams, "sync.poll_interval_s": 60, "sync.shadow_every": 2})
    del tree["source"]
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1, 20, "v1")
        make_package(store, "tiny", 2, keys)  # the same weights: the same top-1 on every frame
        reply, _ = send_command(probe, topics, "deploy", {"version": 2})
        assert reply["ok"], reply
        assert agent.shadow.shadow_version == 1
        _wait_shadow_frames(probe, topics.telemetry, 2, 20)
        assert _agreement_of(probe, topics.telemetry, 2) == 1.0
