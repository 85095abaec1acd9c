"""Streams move between an agent's models live: a camera handed from the detector to the classifier of `models:`
by signed set-config ends its objects and starts publishing result events under its own name, with its model's
version in its figures, while the other camera's object is followed on without a break; a stream naming a model
the agent does not serve yet is refused whole; a further model's pin changes live (a newer version waits until
it is unpinned), and adding a model is refused until a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.object_events import ObjectTopics
from shared.object_store import LocalStore
from shared.topics import DeviceTopics
from tests.edge.detection_package import Square, make_detection_package, write_scene
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import (
    agent_config,
    running_agent,
    send_command,
    topics_of,
    wait_until,
    write_public_key,
)

CLASSIFIER_VERSION = 3


def camera(name: str, path: Path, **over: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "image_dir", "path": str(path), "loop": True}, "policy": "fifo",
            "stale_ms": None, "max_fps": 20, **over}


def test_a_camera_moves_from_the_detector_to_the_classifier_live_and_the_other_camera_goes_on(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_detection_package(store, "squares", 1, keys)
    make_package(store, "tiny", CLASSIFIER_VERSION, keys)
    standing = [[Square(8, 8)] for _ in range(6)]  # looped: one object that stays as long as its camera runs
    north, south = (camera(n, write_scene(tmp_path / n, standing)) for n in ("north", "south"))
    dock = camera("dock", write_scene(tmp_path / "dock", standing), model="tiny")
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, {},
                        **{"sync.model": "squares", "models": [{"name": "tiny"}], "streams": [north, south, dock],
                           "detection.tracker.lost_frames": 4})
    del tree["source"]
    topics = topics_of(tree)
    objects = ObjectTopics(topics)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")

    def objects_of(stream: str, kind: str) -> list[dict[str, Any]]:
        return [m.json() for m in probe.on(objects.events)
                if m.json().get("stream") == stream and m.json()["type"] == kind]

    def results_of(stream: str) -> list[dict[str, Any]]:
        return [m.json() for m in probe.on(topics.events) if m.json().get("stream") == stream]

    def figures() -> dict[str, dict[str, float]]:
        reports = probe.on(topics.telemetry)
        return reports[-1].json().get("streams", {}) if reports else {}

    with running_agent(tree):
        wait_until(lambda: bool(objects_of("north", "new") and objects_of("south", "new") and results_of("dock")),
                   60, "both cameras' objects and dock's results")
        wait_until(lambda: figures().get("south", {}).get("model_version") == 1
                   and figures().get("dock", {}).get("model_version") == CLASSIFIER_VERSION, 30,
                   "each stream's model version in telemetry")
        assert not results_of("north") and not results_of("south"), "a detector's cameras publish no result events"

        reply, _ = send_command(probe, topics, "set-config", {"values": {"streams": [
            north, {**south, "model": "tiny"}, dock]}})
        assert reply["ok"] and "streams" in reply["result"]["applied"], reply
        wait_until(lambda: bool(objects_of("south", "end")), 30, "south's object to end")
        wait_until(lambda: len(results_of("south")) >= 5, 30, "south's result events from the classifier")
        wait_until(lambda: figures().get("south", {}).get("model_version") == CLASSIFIER_VERSION, 30,
                   "south's figures to name the classifier's version")
        results = results_of("south")
        assert {r["after"]["model_version"] for r in results} == {CLASSIFIER_VERSION}
        # And back: south returns to the detector. The classifier's removal of south ends nothing of the detector's:
        # its new object there is followed on, not ended when the classifier's last south result is out.
        reply, _ = send_command(probe, topics, "set-config", {"values": {"streams": [north, south, dock]}})
        assert reply["ok"], reply
        wait_until(lambda: len(objects_of("south", "new")) == 2, 30, "south's object on the detector again")
        time.sleep(1.0)  # ten frames
        assert len(objects_of("south", "end")) == 1, "the classifier's removal ended the detector's new object"

        # A stream naming a model this agent does not serve: refused whole, nothing moves.
        reply, _ = send_command(probe, topics, "set-config", {"values": {"streams": [
            north, south, {**dock, "model": "plates"}]}})
        assert not reply["ok"] and "plates" in reply["error"], reply
        # A further model's pin changes live: a newer version published meanwhile waits until it is unpinned.
        reply, _ = send_command(probe, topics, "set-config", {"values": {"models": [
            {"name": "tiny", "pinned_version": CLASSIFIER_VERSION}]}})
        assert reply["ok"] and reply["result"] == {"applied": ["models"], "restart_required": []}, reply
        make_package(store, "tiny", CLASSIFIER_VERSION + 1, keys)
        time.sleep(2.0)  # four polls
        assert figures()["dock"]["model_version"] == CLASSIFIER_VERSION
        reply, _ = send_command(probe, topics, "set-config", {"values": {"models": [{"name": "tiny"}]}})
        assert reply["ok"], reply
        wait_until(lambda: figures().get("dock", {}).get("model_version") == CLASSIFIER_VERSION + 1, 30,
                   "dock's model to move to the newer version once unpinned")
        assert figures()["north"]["model_version"] == 1
        # Adding a model needs a restart (its sync, slot and scheduler are made at start): refused whole.
        reply, _ = send_command(probe, topics, "set-config", {"values": {
            "models": [{"name": "tiny"}, {"name": "plates"}],
            "streams": [north, {**south, "model": "plates"}, dock]}})
        assert not reply["ok"] and "restart" in reply["error"], reply
        before = len(results_of("dock"))
        wait_until(lambda: len(results_of("dock")) >= before + 5, 30, "dock to go on")

    # north's object was followed across every change: one object, never ended until the agent stopped.
    assert len(objects_of("north", "new")) == 1
    # south: one object before the move, none on the classifier, one after its return.
    assert len(objects_of("south", "new")) == 2


def detector_beside(tmp_path: Path, broker: Broker, side: str, publish_side: Callable[[LocalStore, KeyPair], object]
                    ) -> tuple[dict[str, Any], DeviceTopics, MqttProbe]:
    """The detector (sync.model) on camera north and `side`, published by publish_side, on camera dock."""
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_detection_package(store, "squares", 1, keys)
    publish_side(store, keys)
    standing = [[Square(8, 8)] for _ in range(6)]
    north = camera("north", write_scene(tmp_path / "north", standing))
    dock = camera("dock", write_scene(tmp_path / "dock", standing), model=side)
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, {},
                        **{"sync.model": "squares", "models": [{"name": side}], "streams": [north, dock]})
    del tree["source"]
    topics = topics_of(tree)
    return tree, topics, MqttProbe(broker, f"{topics.base}/#")


def test_a_forged_package_of_a_side_model_is_refused_counted_and_never_served_while_the_detector_goes_on(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, topics, probe = detector_beside(
        tmp_path, mosquitto, "tiny", lambda store, keys: make_package(store, "tiny", 1, keys, bad_signature=True))

    def last(topic: str) -> dict[str, Any]:
        found = probe.on(topic)
        return found[-1].json() if found else {}

    with running_agent(tree):
        wait_until(lambda: last(topics.telemetry).get("package_rejects", 0) >= 1, 30,
                   "the side model's forged package to be counted")
        wait_until(lambda: bool(probe.on(ObjectTopics(topics).events)), 30, "the detector's objects")
        state = last(topics.state)
        streams = last(topics.telemetry)["streams"]
    assert state["model"]["version"] == 1 and state["model"]["streams"] == ["north"]
    assert [(m["name"], m["version"], m["streams"]) for m in state["models"]] == [("tiny", None, ["dock"])]
    # The side model never served: its stream infers nothing and says no model serves it.
    assert streams["dock"]["model_version"] == 0 and streams["dock"]["frames"] == 0
    assert not [m for m in probe.on(topics.events) if m.json().get("stream") == "dock"]


def test_a_second_detector_is_refused_before_it_loads_and_is_not_activated(tmp_path: Path, mosquitto: Broker) -> None:
    """One model per task: the tracker and the rollout's evidence are per task. The second detector is counted as
    a refused package, never activated in its cache (no anti-rollback floor, nothing to recover at the next start),
    and not retried by polling, while the first detector serves on."""
    tree, topics, probe = detector_beside(
        tmp_path, mosquitto, "plates", lambda store, keys: make_detection_package(store, "plates", 1, keys))

    def telemetry() -> dict[str, Any]:
        found = probe.on(topics.telemetry)
        return found[-1].json() if found else {}

    with running_agent(tree):
        wait_until(lambda: telemetry().get("package_rejects", 0) >= 1, 30, "the second detector to be refused")
        wait_until(lambda: telemetry().get("streams", {}).get("north", {}).get("frames", 0) >= 5, 30,
                   "the first detector to serve")
        time.sleep(1.5)  # three more polls: the refused version is not tried again
        assert telemetry()["package_rejects"] == 1
        state = probe.on(topics.state)[-1].json()
    assert state["model"]["version"] == 1 and state["models"][0]["version"] is None
    cache = Path(tree["sync"]["cache_dir"])
    assert (cache / "squares" / "current.json").exists() and not (cache / "plates" / "current.json").exists()
