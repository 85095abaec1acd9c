"""Real-agent rollouts: `fleet serve` on SQLite with a default plan's stages shortened, N real agents in group
`north` on version 1 with a window of history, and the rollout CLI; one copy for every such test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from fleet.control import assign_group
from fleet.db.store import FleetStore
from fleet.rollout.plan import default_plan
from shared.object_store import LocalStore
from tests.edge.package_factory import KeyPair
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
# Short stages for tests: 20 s soak and window, one analysis a second.
TIMING = {"soak_s": 20, "analysis_interval_s": 1, "window_s": 20, "device_deadline_s": 30, "deadline_s": 150}


@contextmanager
def rollout_fleet(
    tmp_path: Path, mosquitto: Broker, store: LocalStore, keys: KeyPair, pub: Path, *, agents: int,
    source: Mapping[str, Any], agent_settings: Mapping[str, Any], ready_s: float = 60,
) -> Iterator[dict[str, Any]]:
    """`fleet serve` plus `agents` real agents on version 1 with 20 s of telemetry; yields what rollout_cli needs."""
    url = f"sqlite:///{tmp_path}/fleet.sqlite"
    conf = tmp_path / "fleet.yaml"
    settings: dict[str, Any] = {
        "commands.key": str(write_private_key(COMMAND_KEY, tmp_path / "fleet.key")),
        "packages.store.uri": str(store.root), "packages.trusted_keys": [str(pub)],
    }
    conf.write_text(yaml.safe_dump(fleet_tree(mosquitto, url, **settings)))
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
        with ExitStack() as running:
            for i in range(agents):
                home = tmp_path / f"a{i}"
                home.mkdir()
                tree = agent_config(home, store, pub, mosquitto, dict(source), **{
                    "device.device_id": f"cam-{i}", "device.groups": ["north"], "events.mode": "off",
                    **agent_settings})
                running.enter_context(running_agent(tree))
            eventually(lambda: len([d for d in db.list_devices() if d.model_version == 1]) == agents, ready_s,
                       "every agent on version 1")
            for i in range(agents):
                assign_group(db, f"cam-{i}", "north")
            # A window of history before the rollout: the last stage judges against the group's baseline.
            eventually(lambda: all(len(db.telemetry_window(f"cam-{i}", int(time.time() * 1000) - 20_000,
                                                           int(time.time() * 1000))) >= 30 for i in range(agents)),
                       max(60.0, ready_s / 2), "20 s of telemetry from every agent")
            yield {"conf": conf, "store": store, "keys": keys, "db": db, "tmp": tmp_path}
    finally:
        serve.terminate()
        serve.wait(20)
        db.close()


def rollout_cli(conf: Path, *args: str) -> str:
    """`edgeferry fleet rollout ARGS --config conf`'s output; the test fails on a non-zero exit."""
    out = subprocess.run([EDGEFERRY, "fleet", "rollout", *args, "--config", str(conf)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def run_rollout(fleet: Mapping[str, Any], model: str, timeout_s: float) -> dict[str, Any]:
    """Start version 2 of `model` on group north with the shortened plan; its status once it stopped running."""
    rollout_cli(fleet["conf"], "start", "--model", model, "--model-version", "2", "--group", "north", "--plan",
                str(fleet["tmp"] / "plan.yaml"))
    st: dict[str, Any] = eventually(
        lambda: (s := json.loads(rollout_cli(fleet["conf"], "status", "--output", "json")))["state"] != "running"
        and s, timeout_s, "the rollout to finish")
    return st
