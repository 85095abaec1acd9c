"""The default rollout plan with real agents: real Mosquitto, `fleet serve`, four in-process agents running real ONNX
packages with the shadow check on (sync.shadow_every). A version whose labels are permuted fails at the canary stage
on the shadow agreement; a version that predicts the same classes passes every stage. The package factory's model
is a small random network, so "the same predictions" is the same weights published again, not a retrained one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.control import assign_group
from fleet.db.store import FleetStore
from fleet.rollout.plan import default_plan
from shared.object_store import LocalStore
from tests.edge.package_factory import DEFAULT_LABELS, make_package, new_keypair
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, write_public_key

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
AGENTS = 4
TIMING = {"soak_s": 20, "analysis_interval_s": 1, "window_s": 20, "device_deadline_s": 30, "deadline_s": 150}


def _cli(conf: Path, *args: str) -> str:
    out = subprocess.run([EDGEFERRY, "fleet", "rollout", *args, "--config", str(conf)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Iterator[dict[str, Any]]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys)
    pub = write_public_key(keys, tmp_path / "pkg.pub")
    url = f"sqlite:///{tmp_path}/fleet.sqlite"
    conf = tmp_path / "fleet.yaml"
    conf.write_text(yaml.safe_dump(fleet_tree(mosquitto, url, **{
        "commands.key": str(write_private_key(COMMAND_KEY, tmp_path / "fleet.key")),
        "packages.store.uri": str(store.root), "packages.trusted_keys": [str(pub)],
    })))
    plan = default_plan().model_dump(mode="json")
    for stage in plan["stages"]:
        stage.update(TIMING)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    log = open(tmp_path / "serve.log", "ab")  # noqa: SIM115 - the child process owns it
    serve = subprocess.Popen([EDGEFERRY, "fleet", "serve", "--config", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=log)
    log.close()
    db = FleetStore.open(url, "it")
    try:
        with ExitStack() as agents:
            for i in range(AGENTS):
                home = tmp_path / f"a{i}"
                home.mkdir()
                tree = agent_config(home, store, pub, mosquitto,
                                    {"type": "synthetic", "width": 32, "height": 32, "fps": 20},
                                    **{"device.device_id": f"cam-{i}", "device.groups": ["north"],
                                       "events.mode": "off", "sync.shadow_every": 2})
                agents.enter_context(running_agent(tree))
            eventually(lambda: len([d for d in db.list_devices() if d.model_version == 1]) == AGENTS, 60,
                       "every agent on version 1")
            for i in range(AGENTS):
                assign_group(db, f"cam-{i}", "north")
            # A window of history before the rollout: the last stage judges against the group's baseline.
            eventually(lambda: all(len(db.telemetry_window(f"cam-{i}", int(time.time() * 1000) - 20_000,
                                                           int(time.time() * 1000))) >= 30 for i in range(AGENTS)),
                       60, "20 s of telemetry from every agent")
            yield {"conf": conf, "store": store, "keys": keys, "db": db, "tmp": tmp_path}
    finally:
        serve.terminate()
        serve.wait(20)
        db.close()


def _rollout(fleet: dict[str, Any]) -> dict[str, Any]:
    _cli(fleet["conf"], "start", "--model", "tiny", "--model-version", "2", "--group", "north", "--plan",
         str(fleet["tmp"] / "plan.yaml"))
    st: dict[str, Any] = eventually(
        lambda: (s := json.loads(_cli(fleet["conf"], "status", "--output", "json")))["state"] != "running" and s,
        300, "the rollout to finish")
    return st


def test_a_label_permuted_version_fails_at_the_canary_stage(fleet: dict[str, Any]) -> None:
    rotated = [*DEFAULT_LABELS[1:], DEFAULT_LABELS[0]]
    make_package(fleet["store"], "tiny", 2, fleet["keys"], labels=rotated, latest=False)
    st = _rollout(fleet)
    assert st["state"] == "failed" and st["stage"]["name"] == "canary", st["last_reason"]
    shadow = {g["gate"]: g for g in st["gates"]}["mean shadow_agreement >= 0.9"]
    assert shadow["status"] == "fail" and shadow["evidence"]["high"] < 0.9  # the devices' own shadow check


def test_a_version_with_the_same_predictions_passes_every_stage(fleet: dict[str, Any]) -> None:
    make_package(fleet["store"], "tiny", 2, fleet["keys"], latest=False)  # the same weights, published again
    st = _rollout(fleet)
    assert st["state"] == "completed", st["last_reason"]
    assert [e["kind"] for e in json.loads(_cli(fleet["conf"], "history", "--output", "json"))
            if e["kind"] in ("advance", "complete", "rollback")] == ["advance", "advance", "complete"]
