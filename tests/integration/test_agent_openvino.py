"""The agent serving through OpenVINO end to end (real Mosquitto, real store), then a deploy swap with no lost frame."""

from __future__ import annotations

from pathlib import Path

from shared.object_store import LocalStore
from tests.edge.media import write_video
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, send_command, topics_of, write_public_key

FRAMES = 120


def test_agent_serves_through_openvino_and_swaps_versions_without_dropping_a_frame(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys, store = new_keypair(), LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys, precisions=("fp32", "int8"))
    video = write_video(tmp_path / "cam.avi", FRAMES)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "video_file", "path": str(video), "policy": "all", "max_fps": 40},
        **{"sync.poll_interval_s": 60,
           "backend": {"type": "openvino", "threads": 1, "cache_dir": str(tmp_path / "ov-cache")}},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        state = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 20)
        assert state.json()["model"]["backend"] == "openvino"
        make_package(store, "tiny", 2, keys, bias=5.0)
        reply, _ = send_command(probe, topics, "deploy", {"version": 2})
        assert reply["ok"], reply
        state = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 2, 10)
        assert state.json()["model"]["backend"] == "openvino"
        probe.wait_for(lambda m: m.topic == topics.events and m.json()["after"]["frame"] == FRAMES - 1, 30,
                       "the last frame's event")

    frames = [e.json()["after"] for e in probe.on(topics.events) if e.json()["type"] == "frame"]
    assert [f["frame"] for f in frames] == list(range(FRAMES)), "every frame produced exactly one result, in order"
    versions = [f["model_version"] for f in frames]
    switch = versions.index(2)
    assert 0 < switch < FRAMES and set(versions[:switch]) == {1} and set(versions[switch:]) == {2}


def test_agent_measures_every_runtime_publishes_the_choice_and_remeasures_on_command(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys, store = new_keypair(), LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys, precisions=("fp32", "int8"))
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto,
        {"type": "synthetic", "width": 8, "height": 8, "fps": 30},
        **{"sync.poll_interval_s": 60, "backend": {"type": "auto", "threads": 1}},
    )
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        state = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 60).json()
        first = probe.wait_for(lambda m: m.topic == topics.benchmark, 10).json()["result"]
        assert first["measured"] and first["version"] == 1
        runtimes = {c["backend"] for c in first["candidates"]}
        assert {"onnxruntime", "openvino"} <= runtimes, "both installed runtimes were candidates"
        chosen = [c for c in first["candidates"] if c["status"] == "chosen"]
        assert len(chosen) == 1 and chosen[0]["backend"] == state["model"]["backend"]
        assert state["model"]["inference_precision"] in {"f32", "bf16", "f16"}
        assert state["hardware"]["runtime_devices"]["onnxruntime"]

        reply, _ = send_command(probe, topics, "benchmark", {}, timeout=60)
        assert reply["ok"], reply
        again = probe.wait_for(lambda m: m.topic == topics.benchmark and not m.json()["result"]["cached"]
                               and m.json()["seq"] > probe.on(topics.benchmark)[0].json()["seq"], 30)
        assert again.json()["result"]["measured"]
