"""A detection agent end to end over real Mosquitto: a synthetic scene with known objects, served by a tiny signed
detector, becomes Frigate-shaped object events (new/update/end per object, one id each), zone counts in telemetry
and snapshots; a rollout's shadow check reports box agreement with the previous detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.object_events import ObjectTopics
from shared.object_store import LocalStore
from tests.edge.detection_package import HW, Contract, Square, make_detection_package, write_scene
from tests.edge.package_factory import new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, send_command, topics_of, write_public_key

# Zones in frame pixels; an object is in one while its box's bottom-centre is inside.
LEFT = [[0, 0], [24, 0], [24, HW], [0, HW]]
BOTTOM = [[0, 32], [HW, 32], [HW, HW], [0, HW]]


def scene() -> list[list[Square]]:
    """A walks right along the top, B walks left along the bottom, then C stands in the bottom-right corner."""
    frames: list[list[Square]] = []
    for f in range(70):
        squares = []
        if f <= 20:
            squares.append(Square(2 * f, 4))  # A: x 0..40, y 4 (bottom-centre y 12: never in BOTTOM)
        if 16 <= f <= 36:
            squares.append(Square(40 - 2 * (f - 16), 36))  # B: x 40..0 at y 36 (in BOTTOM; in LEFT from x < 20)
        if f >= 50:
            squares.append(Square(36, 34))  # C: stands still in BOTTOM, right of LEFT
        frames.append(squares)
    return frames


def _config(
    tmp_path: Path, broker: Broker, contract: Contract = "yolo", **over: Any
) -> tuple[dict[str, Any], LocalStore]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_detection_package(store, "squares", 1, keys, contract=contract)
    source = {"type": "image_dir", "path": str(write_scene(tmp_path / "scene", scene())), "policy": "all"}
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, source,
        **{
            "sync.model": "squares",
            "detection.zones": {"left": {"coordinates": LEFT, "inertia": 1},
                                "bottom": {"coordinates": BOTTOM, "inertia": 1}},
            "detection.tracker.lost_frames": 4,
            "detection.snapshots": {"enabled": True, "dir": str(tmp_path / "snapshots")},
            **over,
        },
    )
    return tree, store


# yolo: a raw Ultralytics-style head decoded and NMS'd on the device; decoded: boxes, scores and class ids as three
# outputs of a graph that decodes itself (the cloud trainer's detectors).
@pytest.mark.parametrize("contract", ["yolo", "decoded"])
def test_each_object_of_the_scene_gets_one_id_new_updates_end_zones_and_a_snapshot(
    tmp_path: Path, mosquitto: Broker, contract: Contract
) -> None:
    tree, _ = _config(tmp_path, mosquitto, contract)
    topics = topics_of(tree)
    objects = ObjectTopics(topics)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        # The stream ends with C standing in BOTTOM: its telemetry keeps counting it there.
        probe.wait_for(lambda m: m.topic == topics.telemetry and (m.json().get("zone_counts") or {}).get("bottom") == 1
                       and m.json()["zone_counts"].get("left") == 0, 30, "telemetry counting C in bottom")
        probe.wait_for(lambda m: m.topic == objects.events and m.json()["type"] == "end"
                       and m.json()["after"]["frame"] >= 36, 30, "B's end")
    probe.wait_for(lambda m: m.topic == objects.events and m.json()["type"] == "end"
                   and m.json()["after"]["first_seen_ms"] == _first_seen(probe, objects), 15, "C's end at stop")

    events = [m.json() for m in probe.on(objects.events)]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_id.setdefault(e["after"]["id"], []).append(e)
    # Three objects entered and left the scene: three ids, no duplicate for one object.
    assert len(by_id) == 3, {k: [e["type"] for e in v] for k, v in by_id.items()}
    for track in by_id.values():
        types = [e["type"] for e in track]
        assert types[0] == "new" and types[-1] == "end" and types.count("new") == types.count("end") == 1, types
        assert all(t == "update" for t in types[1:-1])
        assert {e["after"]["label"] for e in track} == {"person"}
    a, b, c = sorted(by_id.values(), key=lambda t: t[0]["after"]["first_seen_ms"] * 1000 + t[0]["after"]["frame"])
    # A walked along the top, through LEFT only; B along the bottom into LEFT; C stood in BOTTOM.
    assert a[-1]["after"]["entered_zones"] == ["left"]
    assert b[-1]["after"]["entered_zones"][:1] == ["bottom"] and "left" in b[-1]["after"]["entered_zones"]
    assert c[-1]["after"]["entered_zones"] == ["bottom"]
    # B's update when it entered LEFT.
    assert any(e["type"] == "update" and "left" in e["after"]["current_zones"] for e in b)
    # Boxes are where the squares were (frame pixels of an exact detector).
    assert c[0]["after"]["box"] == [36.0, 34.0, 44.0, 42.0]
    # Each object's best frame was published as a snapshot on its own topic.
    prefix = f"{topics.base}/objects/snapshots/"
    snapped = {m.topic.removeprefix(prefix) for m in probe.messages if m.topic.startswith(prefix)}
    assert snapped == set(by_id)
    telemetry = [m.json() for m in probe.on(topics.telemetry)]
    assert any(t.get("det_frames_window", 0) > 0 and 0 < t.get("det_score_mean", 0) <= 1 for t in telemetry)
    assert sum(t.get("det_frames_window", 0) for t in telemetry) == 70
    assert sum((t.get("class_counts") or {}).get("person", 0) for t in telemetry) == sum(len(s) for s in scene())


def _first_seen(probe: MqttProbe, objects: ObjectTopics) -> int:
    """first_seen_ms of C (the object first seen at frame >= 50)."""
    for m in probe.on(objects.events):
        after = m.json()["after"]
        if m.json()["type"] == "new" and after["frame"] >= 50:
            return int(after["first_seen_ms"])
    return -1


def test_zones_change_live_by_signed_set_config_and_the_snapshot_directory_does_not(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, _ = _config(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == topics.telemetry and (m.json().get("zone_counts") or {}).get("bottom") == 1,
                       30, "telemetry counting C in bottom")
        right = [[24, 0], [HW, 0], [HW, HW], [24, HW]]
        reply, _ = send_command(probe, topics, "set-config",
                                {"values": {"detection.zones": {"right": {"coordinates": right}}}})
        assert reply["ok"] and reply["result"]["restart_required"] == [], reply
        assert any(k.startswith("detection.zones") for k in reply["result"]["applied"]), reply
        # The zones in force now are the new ones (tracking restarted under them: C was ended, no frame follows).
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("zone_counts") == {"right": 0}, 10,
                       "telemetry with the new zones")
        refused, _ = send_command(probe, topics, "set-config",
                                  {"values": {"detection.snapshots.dir": str(tmp_path / "elsewhere")}})
        assert not refused["ok"] and "detection.snapshots.dir" in refused["error"], refused
