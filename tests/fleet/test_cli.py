"""`edgeferry fleet ...` as an operator runs it: listing, groups, deploy and rollback on a real broker, and bad
input refused in one line with exit 1, nothing stored and nothing sent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.db.store import FleetStore
from shared.command_signing import parse_envelope, verify_envelope
from shared.desired_state import verify_desired
from shared.object_store import LocalStore
from shared.signing import key_id
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, write_public_key

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
TRUSTED = {key_id(COMMAND_KEY.public_key()): COMMAND_KEY.public_key()}


class Fleet:
    """A fleet config on disk, its database seeded with two devices of group north, and a probe on the broker."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        keys = new_keypair()
        pkg = LocalStore(tmp / "store")
        make_package(pkg, "tiny", 1, keys)
        make_package(pkg, "tiny", 2, keys, latest=False)
        make_package(pkg, "tiny", 3, keys, latest=False, corrupt="model.fp32.onnx")
        self.keys, self.pkg = keys, pkg
        self.url = f"sqlite:///{tmp}/fleet.sqlite"
        self.conf = tmp / "fleet.yaml"
        self.conf.write_text(yaml.safe_dump(fleet_tree(broker, self.url, **{
            "commands.key": str(write_private_key(COMMAND_KEY, tmp / "fleet.key")),
            "packages.store.uri": str(pkg.root),
            "packages.trusted_keys": [str(write_public_key(keys, tmp / "pkg.pub"))],
        })))
        self.store = FleetStore.open(self.url, "it")
        now = int(time.time() * 1000)
        for dev in ("cam-1", "cam-2"):
            self.store.devices.update(dev, lambda r: replace(
                r, reported_status="online", last_seen_ms=now, reported_groups=("north",), groups=("north",),
                model_name="tiny", model_version=1, telemetry_interval_s=60.0,
            ))
        self.probe = MqttProbe(broker, "edgeferry/it/+/desired", "edgeferry/it/+/cmd/+")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EDGEFERRY, "fleet", *args, "--config", str(self.conf)], capture_output=True,
                              text=True, timeout=120)

    def close(self) -> None:
        self.store.close()
        self.probe.close()


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Any:
    f = Fleet(tmp_path, mosquitto)
    yield f
    f.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope", "--model-version", "1", "--group", "north"], "nope v1 in .* does not exist"),
    (["--model", "tiny", "--model-version", "9", "--group", "north"], "tiny v9 in .* does not exist"),
    (["--model", "tiny", "--model-version", "3", "--group", "north"], "tiny v3 in .* fails verification: .*sha256"),
    (["--model", "tiny", "--model-version", "1", "--group", "south"], "group 'south' .* has no devices"),
    (["--model", "tiny", "--model-version", "1", "--device", "cam-9"], "device 'cam-9' has never reported"),
    (["--model", "tiny", "--model-version", "1"], "name exactly one target"),
    (["--model", "tiny", "--model-version", "1", "--device", "cam-1", "--group", "north"], "name exactly one target"),
    (["--model", "../x", "--model-version", "1", "--group", "north"], "invalid model name"),
])
def test_bad_deploy_is_one_line_and_changes_nothing(fleet: Fleet, args: list[str], message: str) -> None:
    out = fleet.run("deploy", *args)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert re.search(message, lines[0]), lines[0]
    assert fleet.store.desired.all() == []
    time.sleep(0.3)
    assert fleet.probe.messages == [], "nothing reached the broker"


def test_deploy_publishes_signed_desired_state_and_commands_then_rollback(fleet: Fleet) -> None:
    out = fleet.run("rollback", "--group", "north")
    assert out.returncode == 1 and "no earlier desired version" in out.stderr

    out = fleet.run("deploy", "--model", "tiny", "--model-version", "1", "--group", "north")
    assert out.returncode == 0, out.stderr
    assert "deployed tiny v1 to group north: 2 device(s) (cam-1, cam-2)" in out.stdout
    for dev in ("cam-1", "cam-2"):
        desired = fleet.probe.wait_for(lambda m, d=dev: m.topic == f"edgeferry/it/{d}/desired")
        state = verify_desired(desired.payload, TRUSTED, "it", dev)
        assert (state.model, state.version, state.allow_downgrade) == ("tiny", 1, False)
        cmd = fleet.probe.wait_for(lambda m, d=dev: m.topic == f"edgeferry/it/{d}/cmd/deploy")
        body = verify_envelope(parse_envelope(cmd.json()), TRUSTED)
        assert body.target.device == dev and body.args["version"] == 1 and body.seq > state.seq
    late = MqttProbe(fleet.probe.broker, "edgeferry/it/cam-1/desired")
    assert late.wait_for(lambda m: m.retain).topic.endswith("/desired"), "desired state is retained"
    late.close()

    assert fleet.run("deploy", "--model", "tiny", "--model-version", "2", "--group", "north").returncode == 0
    out = fleet.run("rollback", "--group", "north")
    assert out.returncode == 0, out.stderr
    assert "rolled group north back to tiny v1" in out.stdout
    last = [m for m in fleet.probe.on("edgeferry/it/cam-2/desired")][-1]
    state = verify_desired(last.payload, TRUSTED, "it", "cam-2")
    assert (state.version, state.allow_downgrade) == (1, True)
    seqs = [verify_desired(m.payload, TRUSTED, "it", "cam-2").seq for m in fleet.probe.on("edgeferry/it/cam-2/desired")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3, "each desired state is above the one before"


def test_devices_show_and_groups(fleet: Fleet) -> None:
    out = fleet.run("devices", "--output", "json", "--group", "north", "--status", "online")
    assert out.returncode == 0, out.stderr
    assert [d["device_id"] for d in json.loads(out.stdout)] == ["cam-1", "cam-2"]
    table = fleet.run("devices")
    assert table.returncode == 0 and "cam-1" in table.stdout and "online" in table.stdout
    assert fleet.run("devices", "--output", "json", "--model-version", "7").stdout.strip() == "[]"
    bad = fleet.run("devices", "--status", "sleepy")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --status 'sleepy' is not one of")

    shown = fleet.run("show", "cam-1")
    assert shown.returncode == 0 and json.loads(shown.stdout)["model_version"] == 1
    missing = fleet.run("show", "cam-9")
    assert missing.returncode == 1 and "never reported" in missing.stderr

    assert fleet.run("groups", "assign", "cam-1", "south").stdout.strip() == "cam-1 assigned to south"
    groups = json.loads(fleet.run("groups", "--output", "json").stdout)
    assert groups == {"north": ["cam-1", "cam-2"], "south": ["cam-1"]}
    assert "unassigned from south" in fleet.run("groups", "unassign", "cam-1", "south").stdout
    assert "south" not in fleet.run("groups").stdout
    nobody = fleet.run("groups", "assign", "cam-9", "south")
    assert nobody.returncode == 1 and "never reported" in nobody.stderr


def test_broker_flag_beats_the_config_file_on_every_fleet_command_that_connects(tmp_path: Path) -> None:
    """--broker HOST[:PORT] maps onto broker.host/port over the file: the commands try the flag's broker (nothing
    listens on port 1), not the file's, and say so in one line."""
    conf = tmp_path / "fleet.yaml"
    conf.write_text(yaml.safe_dump({"fleet": "it", "database": {"url": f"sqlite:///{tmp_path}/fleet.sqlite"},
                                    "broker": {"host": "file-broker.invalid", "port": 1883, "connect_timeout_s": 2},
                                    "commands": {"key": str(write_private_key(COMMAND_KEY, tmp_path / "k"))},
                                    "packages": {"store": {"uri": str(tmp_path / "store")}}}))
    for args in (["devices", "remove", "cam-1"], ["deploy", "--model", "tiny", "--model-version", "1", "--device",
                                                  "cam-1"], ["rollback", "--device", "cam-1"]):
        done = subprocess.run([EDGEFERRY, "fleet", *args, "--config", str(conf), "--broker", "127.0.0.1:1"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "127.0.0.1:1" in done.stderr and "file-broker" not in done.stderr, (args, done.stderr)


def test_broker_flag_without_a_port_keeps_the_file_s_port_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "fleet.yaml"
    conf.write_text(yaml.safe_dump({"fleet": "it", "database": {"url": f"sqlite:///{tmp_path}/fleet.sqlite"},
                                    "broker": {"port": 1, "connect_timeout_s": 2}}))
    done = subprocess.run([EDGEFERRY, "fleet", "devices", "remove", "cam-1", "--config", str(conf),
                           "--broker", "127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "127.0.0.1:1" in done.stderr, done.stderr
    bad = subprocess.run([EDGEFERRY, "fleet", "serve", "--config", str(conf), "--broker", "localhost:http"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: --broker must be HOST[:PORT] with a port from 1 to 65535, got 'localhost:http'"], bad.stderr
