"""Signed commands against a real Mosquitto and a real agent: only commands signed by a key in the device's local
config, addressed to it, fresh and not replayed (also across a restart) run; every other one gets an error reply
and is counted in telemetry. `edgeferry cmd` and `edgeferry keygen` as an operator runs them."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.command_signing import Target
from shared.object_store import LocalStore
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import (
    agent_config,
    running_agent,
    send_command,
    signed_command,
    topics_of,
    write_public_key,
)

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]
SYNTHETIC = {"type": "synthetic", "width": 32, "height": 32, "fps": 25}


def _tree(
    tmp_path: Path, broker: Broker, versions: tuple[int, ...] = (1,), over: dict[str, Any] | None = None
) -> tuple[dict[str, Any], LocalStore, KeyPair]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    for v in versions:
        make_package(store, "tiny", v, keys)
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, SYNTHETIC,
                        **{"events.mode": "off", "sync.poll_interval_s": 60, **(over or {})})
    return tree, store, keys


def _serving(probe: MqttProbe, tree: dict[str, Any], version: int = 1) -> dict[str, Any]:
    topics = topics_of(tree)
    state = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == version, 30,
                           f"state serving v{version}")
    return dict(state.json())


def _telemetry_with(probe: MqttProbe, tree: dict[str, Any], want: dict[str, float]) -> dict[str, Any]:
    topics = topics_of(tree)
    msg = probe.wait_for(
        lambda m: m.topic == topics.telemetry and all(m.json().get(k) == v for k, v in want.items()), 15,
        f"telemetry with {want}",
    )
    return dict(msg.json())


def test_unsigned_forged_stale_replayed_and_misaddressed_commands_are_refused_and_counted(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, _, _ = _tree(tmp_path, mosquitto, over={"device.groups": ["roof"]})
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    stranger = Ed25519PrivateKey.generate()
    now_ms = int(time.time() * 1000)
    with running_agent(tree):
        state = _serving(probe, tree)
        assert state["unsigned_commands"] is False
        ok, _ = send_command(probe, topics, "ping", {})
        assert ok["ok"] and ok["result"]["model"]["version"] == 1, ok
        accepted = signed_command(topics, "ping", {"id": "once"})
        assert send_command(probe, topics, "ping", {"id": "once"}, payload=accepted)[0]["ok"]
        tampered = json.loads(signed_command(topics, "deploy", {"id": "t", "version": 1}))
        tampered["signed"] = tampered["signed"].replace('"version":1', '"version":2')
        fleet_wide = signed_command(topics, "ping", {"id": "fleet"}, target=Target(fleet=topics.fleet))
        roof = signed_command(topics, "ping", {"id": "roof"}, target=Target(fleet=topics.fleet, group="roof"))
        cases: list[tuple[str, bytes, str, str]] = [
            ("ping", b'{"id": "u"}', "unsigned", "unsigned command refused"),
            ("ping", signed_command(topics, "ping", {"id": "old"}, now_ms=now_ms - 600_000), "expired",
             "expired 9 min ago"),
            ("ping", signed_command(topics, "ping", {"id": "future"}, now_ms=now_ms + 600_000), "not_yet_valid",
             "in the future"),
            ("ping", accepted, "replayed", "not above the last accepted"),
            ("ping", signed_command(topics, "ping", {"id": "other-dev"},
                                    target=Target(fleet=topics.fleet, device="dev-other")), "not_addressed",
             "device dev-other"),
            ("ping", signed_command(topics, "ping", {"id": "other-fleet"},
                                    target=Target(fleet="elsewhere", device=topics.device_id)), "not_addressed",
             "fleet elsewhere"),
            ("ping", signed_command(topics, "ping", {"id": "basement"},
                                    target=Target(fleet=topics.fleet, group="basement")), "not_addressed",
             "not in it (groups: roof)"),
            ("deploy", json.dumps(tampered).encode(), "bad_signature", "does not match"),
            ("ping", signed_command(topics, "ping", {"id": "stranger"}, key=stranger), "unknown_key",
             "not in this device's device.command_keys"),
        ]
        for name, payload, _, error in cases:
            rid = json.loads(json.loads(payload)["signed"])["id"] if b'"signed"' in payload else "u"
            probe.messages.clear()  # the replayed one shares its id with the reply it got the first time
            reply, _ = send_command(probe, topics, name, {"id": rid}, payload=payload)
            assert (reply["ok"], reply["id"]) == (False, rid), reply
            assert error in reply["error"], (error, reply["error"])
        # a fleet-wide command and one for a group the device is in do run
        for rid, payload in (("fleet", fleet_wide), ("roof", roof)):
            assert send_command(probe, topics, "ping", {"id": rid}, payload=payload)[0]["ok"]
        want: dict[str, float] = {"cmd_refused": float(len(cases))}
        for _, _, reason, _ in cases:
            want[f"cmd_refused_{reason}"] = want.get(f"cmd_refused_{reason}", 0.0) + 1
        figures = _telemetry_with(probe, tree, want)
        assert figures["cmd_errors"] == len(cases)
        assert figures["cmd_refused_state_corrupt"] == 0


def test_a_replay_is_refused_after_a_restart_and_a_signed_downgrade_needs_allow_downgrade(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, _, _ = _tree(tmp_path, mosquitto, versions=(1, 2))
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    deploy_v2 = signed_command(topics, "deploy", {"id": "to-v2", "version": 2})
    with running_agent(tree):
        _serving(probe, tree, 2)  # follows latest
        reply, _ = send_command(probe, topics, "deploy", {"id": "to-v2"}, payload=deploy_v2)
        assert reply["ok"], reply
        refused, _ = send_command(probe, topics, "deploy", {"version": 1})
        assert not refused["ok"] and "anti-rollback" in refused["error"], refused
        reply, _ = send_command(probe, topics, "deploy", {"version": 1, "pin": True, "allow_downgrade": True})
        assert reply["ok"] and reply["result"]["version"] == 1, reply
        _serving(probe, tree, 1)
    state = json.loads((tmp_path / "cmd-seq.json").read_text())
    assert list(state["last"]) and all(v > 0 for v in state["last"].values())

    probe.messages.clear()
    with running_agent(tree):
        _serving(probe, tree, 1)
        again, _ = send_command(probe, topics, "deploy", {"id": "to-v2"}, payload=deploy_v2)
        assert not again["ok"] and "replayed command" in again["error"], again
        _telemetry_with(probe, tree, {"cmd_refused_replayed": 1.0, "model_version": 1.0})
        ping, _ = send_command(probe, topics, "ping", {})
        assert ping["ok"], ping


def test_a_pinned_deploy_refused_by_anti_rollback_leaves_no_pin_behind(tmp_path: Path, mosquitto: Broker) -> None:
    tree, store, keys = _tree(tmp_path, mosquitto, versions=(1, 2))
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        _serving(probe, tree, 2)
        refused, _ = send_command(probe, topics, "deploy", {"version": 1, "pin": True})
        assert not refused["ok"] and "anti-rollback" in refused["error"], refused
        make_package(store, "tiny", 3, keys)
        # Not pinned to the refused v1: a deploy of the latest goes to v3 (a pin on v1 would refuse it).
        latest, _ = send_command(probe, topics, "deploy", {})
        assert latest["ok"] and latest["result"]["version"] == 3, latest
        state = _serving(probe, tree, 3)
    assert state["model"]["version"] == 3


def test_a_flood_of_15_byte_commands_with_a_lone_surrogate_id_is_answered_and_logs_a_few_lines(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    tree, _, _ = _tree(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        _serving(probe, tree)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for _ in range(500):
                probe.client.publish(topics.cmd("ping"), b'{"id":"\\ud800"}', qos=1)
            probe.wait_for(lambda m: len(probe.on(topics.reply("ping"))) >= 500, 60, "500 replies")
            ping, _ = send_command(probe, topics, "ping", {})  # the device still answers its operator
        assert ping["ok"], ping
    replies = [m.json() for m in probe.on(topics.reply("ping"))][:500]
    assert all(r["id"] is None and not r["ok"] and "unsigned command refused" in r["error"] for r in replies)
    from_edge = [r for r in caplog.records if r.name.startswith("edge.commands")]
    assert len(from_edge) <= 3, [r.getMessage() for r in from_edge]
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text


def test_a_corrupt_sequence_state_refuses_signed_commands_and_keeps_serving(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, _, _ = _tree(tmp_path, mosquitto)
    (tmp_path / "cmd-seq.json").write_text('{"version": 1, "last": ')
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        _serving(probe, tree)
        reply, _ = send_command(probe, topics, "ping", {})
        assert not reply["ok"] and "is corrupt" in reply["error"] and "cmd-seq.json" in reply["error"], reply
        _telemetry_with(probe, tree, {"cmd_refused_state_corrupt": 1.0, "model_version": 1.0})
    assert (tmp_path / "cmd-seq.json").read_text() == '{"version": 1, "last": '


def test_unsigned_commands_only_with_the_development_flag_and_the_state_says_so(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    tree, _, _ = _tree(tmp_path, mosquitto, over={"device.allow_unsigned_commands": True})
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with caplog.at_level(logging.WARNING), running_agent(tree):
        assert _serving(probe, tree)["unsigned_commands"] is True
        reply, _ = send_command(probe, topics, "ping", {"id": "dev"}, payload=b'{"id": "dev"}')
        assert reply["ok"], reply
        forged = signed_command(topics, "ping", {"id": "forged"}, key=Ed25519PrivateKey.generate())
        assert not send_command(probe, topics, "ping", {"id": "forged"}, payload=forged)[0]["ok"]
    assert "accepting UNSIGNED commands (development)" in caplog.text


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEFERRY, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_edgeferry_keygen_and_cmd_round_trip(tmp_path: Path, mosquitto: Broker) -> None:
    tree, store, keys = _tree(tmp_path, mosquitto)
    gen = _cli("keygen", str(tmp_path / "ops" / "operator"))
    assert gen.returncode == 0, gen.stderr
    kid = re.search(r"key id:\s+([0-9a-f]{16})", gen.stdout)
    assert kid, gen.stdout
    tree["device"]["command_keys"] = [str(tmp_path / "ops" / "operator.pub")]
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    key = str(tmp_path / "ops" / "operator")
    common = ["--command-key", key, "--fleet", topics.fleet, "--broker", f"{mosquitto.host}:{mosquitto.port}"]
    with running_agent(tree):
        _serving(probe, tree)
        first = _cli("cmd", topics.device_id, "ping", *common)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["ok"] is True
        seq1 = int((tmp_path / "ops" / "operator.seq").read_text())
        second = _cli("cmd", topics.device_id, "ping", *common)  # a new invocation, a higher sequence
        assert second.returncode == 0, second.stderr
        assert int((tmp_path / "ops" / "operator.seq").read_text()) > seq1

        make_package(store, "tiny", 2, keys)
        deploy = _cli("cmd", topics.device_id, "deploy", "version=2", "pin=true", *common)
        assert deploy.returncode == 0, deploy.stderr
        assert json.loads(deploy.stdout)["result"]["version"] == 2
        _serving(probe, tree, 2)

        failed = _cli("cmd", topics.device_id, "deploy", "--args-json", '{"version": 9}', *common)
        assert failed.returncode == 1 and json.loads(failed.stdout)["ok"] is False
        assert failed.stderr.count("\n") == 1 and "refused deploy" in failed.stderr

        bad_config = _cli("cmd", topics.device_id, "set-config", "mqtt.port=99999", *common)
        assert bad_config.returncode == 1 and "mqtt.port" in json.loads(bad_config.stdout)["error"]

        nobody = _cli("cmd", "no-such-device", "ping", *common, "--timeout", "5")
        assert nobody.returncode == 3 and nobody.stderr.count("\n") == 1, nobody.stderr
        assert "no-such-device" in nobody.stderr

    silent = _cli("cmd", topics.device_id, "ping", *common, "--timeout", "2")
    assert silent.returncode == 3, silent.stderr  # the agent is stopped: nothing answers within the timeout

    bad_args = _cli("cmd", topics.device_id, "deploy", "version", *common)
    assert bad_args.returncode == 1 and "key=value" in bad_args.stderr and bad_args.stderr.count("\n") == 1
    no_broker = _cli("cmd", topics.device_id, "ping", "--command-key", key, "--broker", "localhost:1")
    assert no_broker.returncode == 1 and "cannot connect to the broker" in no_broker.stderr
    no_key = _cli("cmd", topics.device_id, "ping", "--command-key", str(tmp_path / "nope"), "--broker", "localhost:1")
    assert no_key.returncode == 1 and "not found" in no_key.stderr
