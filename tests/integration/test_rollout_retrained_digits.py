"""Issue 17 with a real model: the default rollout plan, four real agents reading real MNIST digit images, and
digits models trained by the cloud trainer. A version retrained with a new seed promotes through every stage; the
same network with its labels permuted fails at the first stage. No agent sets sync.shadow_every: the fleet marks
canaries in their desired state and each canary turns the shadow check on because the model is cheap on it.

Set EDGEFERRY_ROLLOUT_RECORD to a directory to keep each run's status and history as JSON there
(bench/results/rollouts.md is written from those)."""

from __future__ import annotations

import json
import os
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
from tests.edge.package_factory import new_keypair, publish_latest
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, write_public_key
from tests.integration.digits_packages import DigitsBuild, build, publish, write_digit_images

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
AGENTS = 4
TIMING = {"soak_s": 20, "analysis_interval_s": 1, "window_s": 20, "device_deadline_s": 30, "deadline_s": 150}
SHADOW_GATE = "mean shadow_agreement >= 0.9"

# Training the two digits models is most of the time: ~2 min on a quiet 2-core machine, over 10 min at load 15.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DigitsBuild]:
    """v1 (seed 42), a retrained v2 (seed 7) and v1 with permuted labels: trained once per session."""
    work = tmp_path_factory.mktemp("digits")
    first = build(work, 42)
    return {"first": first, "retrained": build(work, 7), "permuted": build(work, 42, permuted_from=first)}


def _cli(conf: Path, *args: str) -> str:
    out = subprocess.run([EDGEFERRY, "fleet", "rollout", *args, "--config", str(conf)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker, digits: dict[str, DigitsBuild]) -> Iterator[dict[str, Any]]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    publish(store, digits["first"], 1, keys)
    publish_latest(store, "digits", 1, keys)
    pub = write_public_key(keys, tmp_path / "pkg.pub")
    images = write_digit_images(tmp_path / "digits")
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
                                    {"type": "image_dir", "path": str(images), "loop": True, "max_fps": 20},
                                    **{"device.device_id": f"cam-{i}", "device.groups": ["north"],
                                       "events.mode": "off", "sync.model": "digits"})
                assert "shadow_every" not in tree["sync"]
                agents.enter_context(running_agent(tree))
            eventually(lambda: len([d for d in db.list_devices() if d.model_version == 1]) == AGENTS, 180,
                       "every agent on version 1")
            for i in range(AGENTS):
                assign_group(db, f"cam-{i}", "north")
            # A window of history before the rollout: the last stage judges against the group's baseline.
            eventually(lambda: all(len(db.telemetry_window(f"cam-{i}", int(time.time() * 1000) - 20_000,
                                                           int(time.time() * 1000))) >= 30 for i in range(AGENTS)),
                       90, "20 s of telemetry from every agent")
            yield {"conf": conf, "store": store, "keys": keys, "db": db, "tmp": tmp_path}
    finally:
        serve.terminate()
        serve.wait(20)
        db.close()


def _rollout(fleet: dict[str, Any], name: str) -> dict[str, Any]:
    started = time.monotonic()
    _cli(fleet["conf"], "start", "--model", "digits", "--model-version", "2", "--group", "north", "--plan",
         str(fleet["tmp"] / "plan.yaml"))
    st: dict[str, Any] = eventually(
        lambda: (s := json.loads(_cli(fleet["conf"], "status", "--output", "json")))["state"] != "running" and s,
        400, "the rollout to finish")
    history = json.loads(_cli(fleet["conf"], "history", "--output", "json"))
    record = os.environ.get("EDGEFERRY_ROLLOUT_RECORD")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / f"{name}.json").write_text(json.dumps(
            {"status": st, "history": history, "seconds": round(time.monotonic() - started, 1),
             "load": os.getloadavg()}, indent=1, default=str))
    st["history_kinds"] = [e["kind"] for e in history if e["kind"] in ("advance", "complete", "rollback")]
    return st


def test_a_label_permuted_digits_model_fails_at_the_first_stage(fleet: dict[str, Any],
                                                                 digits: dict[str, DigitsBuild]) -> None:
    assert digits["permuted"].test_accuracy < 0.1 < 0.9 < digits["first"].test_accuracy
    publish(fleet["store"], digits["permuted"], 2, fleet["keys"])
    st = _rollout(fleet, "permuted")
    assert st["state"] == "failed" and st["stage"]["name"] == "canary", st["last_reason"]
    shadow = {g["gate"]: g for g in st["gates"]}[SHADOW_GATE]
    assert shadow["status"] == "fail" and shadow["evidence"]["high"] < 0.9  # the canary's own shadow check
    eventually(lambda: all(d.model_version == 1 for d in fleet["db"].list_devices()), 60, "every agent on v1")


def test_a_digits_model_retrained_with_a_new_seed_passes_every_stage(fleet: dict[str, Any],
                                                                     digits: dict[str, DigitsBuild]) -> None:
    assert digits["retrained"].test_accuracy > 0.9
    publish(fleet["store"], digits["retrained"], 2, fleet["keys"])
    st = _rollout(fleet, "retrained")
    assert st["state"] == "completed", st["last_reason"]
    assert st["history_kinds"] == ["advance", "advance", "complete"]
    eventually(lambda: all(d.model_version == 2 for d in fleet["db"].list_devices()), 60, "every agent on v2")
