"""One detection agent serving two cameras on a real broker: each object's events and snapshots carry its own
camera, ids never collide across cameras, zones belong to their camera; cameras come and go by SIGHUP and by signed
set-config while the other camera keeps every frame, and a removed camera's objects end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.streams.server import MultiStreamLoop
from shared.object_events import ObjectTopics
from shared.object_store import LocalStore
from tests.edge.detection_package import HW, Square, make_detection_package, write_scene
from tests.edge.package_factory import new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import (
    agent_config,
    running_agent,
    send_command,
    topics_of,
    wait_until,
    write_public_key,
)

LEFT = [[0, 0], [24, 0], [24, HW], [0, HW]]
BOTTOM = [[0, 32], [HW, 32], [HW, HW], [0, HW]]


def camera(name: str, path: Path, **over: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "image_dir", "path": str(path), "loop": over.pop("loop", False)},
            "policy": "fifo", "stale_ms": None, "max_fps": 25, **over}


def config(tmp_path: Path, broker: Broker, streams: list[dict[str, Any]]) -> dict[str, Any]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_detection_package(store, "squares", 1, keys)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, {},
        **{"sync.model": "squares", "streams": streams, "detection.tracker.lost_frames": 4,
           "detection.snapshots": {"enabled": True, "dir": str(tmp_path / "snapshots")}},
    )
    del tree["source"]
    return tree


def test_each_cameras_objects_carry_its_name_its_own_ids_and_its_own_zones(tmp_path: Path, mosquitto: Broker) -> None:
    # Both cameras see one object walk right along the top, frame for frame the same: the same track ids at
    # nearly the same moments on each camera, which would give the same object ids if they were tracked as one.
    walk = [[Square(2 * f, 4)] for f in range(21)] + [[] for _ in range(8)]
    north = write_scene(tmp_path / "north", walk)
    south = write_scene(tmp_path / "south", walk)
    tree = config(tmp_path, mosquitto, [
        camera("north", north, zones={"door": {"coordinates": LEFT, "inertia": 1}}),
        camera("south", south, zones={"dock": {"coordinates": BOTTOM, "inertia": 1}}),
    ])
    topics = topics_of(tree)
    objects = ObjectTopics(topics)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        wait_until(lambda: {m.json().get("stream") for m in probe.on(objects.events) if m.json()["type"] == "end"}
                   == {"north", "south"}, 60, "each camera's object to end")
    events = [m.json() for m in probe.on(objects.events)]
    ids: dict[str, set[str]] = {}
    for e in events:
        ids.setdefault(e["stream"], set()).add(e["after"]["id"])
    assert set(ids) == {"north", "south"}
    assert len(ids["north"]) == len(ids["south"]) == 1, ids
    assert not ids["north"] & ids["south"], "object ids are unique per device"
    # The walker crosses north's door; south's only zone (dock, at the bottom) it never enters.
    last = {e["stream"]: e["after"] for e in events if e["type"] == "end"}
    assert last["north"]["entered_zones"] == ["door"] and last["south"]["entered_zones"] == []
    prefix = f"{topics.base}/objects/snapshots/"
    snaps = {m.topic.removeprefix(prefix): m.json()["stream"] for m in probe.messages if m.topic.startswith(prefix)}
    assert snaps == {next(iter(ids[s])): s for s in ("north", "south")}


def test_cameras_are_added_and_removed_live_while_the_other_keeps_every_frame(
    tmp_path: Path, mosquitto: Broker
) -> None:
    standing = [[Square(8, 8)] for _ in range(6)]  # looped: one object that stays as long as its camera runs
    scenes = {name: write_scene(tmp_path / name, standing) for name in ("north", "south", "east")}
    streams = {name: camera(name, path, loop=True) for name, path in scenes.items()}
    tree = config(tmp_path, mosquitto, [streams["north"], streams["south"]])
    topics = topics_of(tree)
    objects = ObjectTopics(topics)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")

    def seen(stream: str, kind: str = "new") -> list[dict[str, Any]]:
        return [m.json() for m in probe.on(objects.events)
                if m.json().get("stream") == stream and m.json()["type"] == kind]

    with running_agent(tree) as agent:
        frames = agent.frames
        assert isinstance(frames, MultiStreamLoop)
        wait_until(lambda: bool(seen("north") and seen("south")), 60, "both cameras' objects")

        def south() -> dict[str, float]:
            return frames.stream_figures()["south"]

        wait_until(lambda: south()["frames"] > 5, 30, "south to run")
        before = south()
        # SIGHUP after the config file changed: north goes, east comes.
        tree["streams"] = [streams["south"], streams["east"]]
        result = agent.reload()
        assert "streams" in result["applied"], result
        wait_until(lambda: bool(seen("north", "end")), 15, "north's object to end")
        wait_until(lambda: bool(seen("east")), 30, "east's object")
        assert set(frames.captures) == {"south", "east"}
        wait_until(lambda: south()["frames"] >= before["frames"] + 20, 30, "south to go on")
        # Signed set-config: north comes back (a new object: a camera that came back is tracked afresh).
        reply, _ = send_command(probe, topics, "set-config", {"values": {
            "streams": [streams["south"], streams["east"], streams["north"]]}})
        assert reply["ok"] and "streams" in reply["result"]["applied"], reply
        wait_until(lambda: len(seen("north")) == 2, 30, "north's object again")
        after = south()
    assert seen("north")[0]["after"]["id"] != seen("north")[1]["after"]["id"]
    assert after["frames"] > before["frames"]
    # south ran through both changes without losing a frame: nothing skipped, nothing stale, no reconnect.
    assert (after["skipped"], after["stale"], after["source_errors"]) == (0, 0, 0)
    assert (before["skipped"], before["stale"]) == (0, 0)
    assert len(seen("south")) == 1, "south's object was followed across both changes"
