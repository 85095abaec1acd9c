"""Packages made by `edgeferry package` are served by a real agent over real Mosquitto: it syncs each from the store,
passes its golden smoke test, and publishes results (classifier) or object events in frame pixels (detector)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cloud.byo.package import PackageRequest, package_model
from shared.object_events import ObjectTopics
from shared.object_store import LocalStore
from shared.signing import generate_keypair
from tests.cloud.byo.external_models import (
    classifier_onnx,
    colour_image,
    write_colour_folders,
    write_square_images,
    yolo_onnx,
)
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, running_agent, topics_of

FRAME = 128  # camera frames are twice the model's 64 px: letterboxed down, boxes mapped back up
SQUARE = 16
WALK = 20  # frames the square walks for, then the scene is empty


def _walk_frames(directory: Path) -> Path:
    """A square walking right along y=40, 4 px per frame, then empty frames so the object ends."""
    directory.mkdir(parents=True)
    for f in range(WALK + 8):
        frame = np.full((FRAME, FRAME, 3), 20, dtype=np.uint8)
        if f < WALK:
            x = 4 + 4 * f
            frame[40 : 40 + SQUARE, x : x + SQUARE] = 255
        cv2.imwrite(str(directory / f"frame-{f:03d}.png"), frame)
    return directory


def _agent_tree(tmp_path: Path, store: LocalStore, public: Path, broker: Broker, model: str, frames: Path,
                **over: Any) -> dict[str, Any]:
    source = {"type": "image_dir", "path": str(frames), "policy": "all"}
    return agent_config(tmp_path, store, public, broker, source, **{"sync.model": model, **over})


def test_a_packaged_yolo_export_is_served_with_object_events_in_frame_pixels(tmp_path: Path, mosquitto: Broker) -> None:
    pair = generate_keypair(tmp_path / "keys" / "pkg.key")
    store = LocalStore(tmp_path / "store")
    write_square_images(tmp_path / "calib", 16)
    package_model(PackageRequest(onnx=yolo_onnx(tmp_path / "yolo11n.onnx"), task="detection", name="squares",
                                 store=str(store.root), signing_key=pair.private, calibration_dir=tmp_path / "calib"))
    tree = _agent_tree(tmp_path, store, pair.public, mosquitto, "squares", _walk_frames(tmp_path / "scene"),
                       **{"detection.tracker.lost_frames": 3})
    topics = topics_of(tree)
    objects = ObjectTopics(topics)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == objects.events and m.json()["type"] == "end", 60, "the square's end")
    events = [m.json() for m in probe.on(objects.events)]
    types = [e["type"] for e in events]
    assert types[0] == "new" and types[-1] == "end" and set(types[1:-1]) <= {"update"}, types
    assert {e["after"]["id"] for e in events} == {events[0]["after"]["id"]}, "one object, one id"
    assert {e["after"]["label"] for e in events} == {"person"}
    # Letterbox undone: the box is the 16 px square of the 128 px frame, where it was in that frame.
    for e in events:
        x1, y1, x2, y2 = e["after"]["box"]
        assert (y1, x2 - x1, y2 - y1) == (40.0, SQUARE, SQUARE), e["after"]
        assert x1 == 4 + 4 * e["after"]["frame"], e["after"]


def test_a_packaged_external_classifier_is_served_frame_by_frame(tmp_path: Path, mosquitto: Broker) -> None:
    pair = generate_keypair(tmp_path / "keys" / "pkg.key")
    store = LocalStore(tmp_path / "store")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    package_model(PackageRequest(onnx=classifier_onnx(tmp_path / "colour.onnx"), task="classification",
                                 name="colours", store=str(store.root), signing_key=pair.private,
                                 labels=tmp_path / "labels.txt",
                                 calibration_dir=write_colour_folders(tmp_path / "c", 4)))
    expected = ["red", "green", "blue", "blue", "red", "green"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, colour in enumerate(expected):
        cv2.imwrite(str(frames / f"frame-{i:03d}.png"), colour_image(colour, (48, 64), seed=100 + i))
    tree = _agent_tree(tmp_path, store, pair.public, mosquitto, "colours", frames)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        probe.wait_for(lambda m: m.topic == topics.events and m.json()["after"]["frame"] == len(expected) - 1, 60,
                       "the last frame's result")
    results = sorted((e["after"] for e in (m.json() for m in probe.on(topics.events)) if e["type"] == "frame"),
                     key=lambda a: a["frame"])
    assert [r["label"] for r in results] == expected
    assert all(r["model_version"] == 1 for r in results)
