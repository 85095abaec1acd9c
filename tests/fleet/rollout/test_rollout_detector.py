"""A detector that invents objects is rolled back on a real agent: real Mosquitto, the real `edgeferry fleet serve`,
two real agents serving a tiny signed detector on a looping synthetic scene. Version 2 passes every gate its own
package carries (its golden samples are its own boxes) but reports boxes around every real object; the canary's
shadow check (box F1 against version 1 on the same frames) and its objects per frame against the control device
catch it at the canary stage, and the canary goes back to version 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.edge.detection_package import HW, SIZE, Square, make_detection_package, write_scene
from tests.edge.package_factory import new_keypair
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually
from tests.fleet.rollout.test_rollout_e2e import COMMON, ControlPlane, _kinds
from tests.integration.agent_harness import agent_config, running_agent, write_public_key

MODEL = "squares"
GATES = [
    {"metric": "shadow_agreement", "op": ">=", "threshold": 0.9, "min_windows": 3},
    {"metric": "det_objects_per_frame", "op": "<=", "threshold": 1.5, "compare": "ratio_to_control",
     "min_windows": 3},
]


def looping_scene() -> list[list[Square]]:
    """Two squares crossing the frame in opposite directions, forever (the source loops)."""
    span = HW - SIZE
    return [[Square(f, 6), Square(span - f, 30)] for f in range(0, span + 1, 2)]


@pytest.fixture
def plane(tmp_path: Path, mosquitto: Broker) -> Iterator[ControlPlane]:
    p = ControlPlane(tmp_path, mosquitto, model=MODEL)
    # The control plane's packages become detectors, signed by a key its config and the agents trust.
    keys = new_keypair()
    write_public_key(keys, p.pkg_pub)
    make_detection_package(p.pkg, MODEL, 1, keys)
    make_detection_package(p.pkg, MODEL, 2, keys, serve="ghosts", latest=False)
    try:
        yield p
    finally:
        p.close()


def test_a_detector_that_invents_objects_is_rolled_back_at_the_canary(plane: ControlPlane) -> None:
    plan = plane.tmp / "detector-plan.yaml"
    plan.write_text(yaml.safe_dump({"stages": [
        {"name": n, "percent": p, "gates": GATES, **{**COMMON, "device_deadline_s": 60}}
        for n, p in (("canary", 50), ("all", 100))]}))
    scene = write_scene(plane.tmp / "scene", looping_scene())
    trees = []
    for i in range(2):
        home = plane.tmp / f"agent{i}"
        home.mkdir()
        trees.append(agent_config(
            home, plane.pkg, plane.pkg_pub, plane.broker,
            {"type": "image_dir", "path": str(scene), "loop": True, "policy": "all", "max_fps": 20},
            **{"sync.model": MODEL, "events.mode": "off", "device.groups": ["north"], "sync.poll_interval_s": 60,
               "sync.shadow_every": 2},
        ))
    plane.start_serve()
    with running_agent(trees[0]), running_agent(trees[1]):
        plane.ready(2)
        plane.start_rollout(plan)
        st = plane.finished(180)
        assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
        assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)
        statuses = {g["gate"]: g["status"] for g in st["gates"]}
        assert statuses == {"mean shadow_agreement >= 0.9": "fail",
                            "mean det_objects_per_frame / control <= 1.5": "fail"}, st["gates"]
        assert _kinds(plane)[-1] == "rollback"
        agents = [t["device"]["device_id"] for t in trees]
        eventually(lambda: all(plane.versions()[a] == 1 for a in agents), 60, "both real agents on version 1")
