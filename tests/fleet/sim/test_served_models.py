"""A simulated multi-stream agent serving a second model on some of its streams: its state lists the model under
`models`, each stream's figures carry the version serving it, and a signed deploy naming the model moves that model
alone (one naming a model the device does not serve is refused in its reply)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.errors import SimulatorError
from fleet.sim.runner import SimOptions, Simulation, ThreadedSimulation, _Client
from shared.command_signing import Target, build_body, sign_command
from shared.payloads import StatePayload, TelemetryPayload
from shared.signing import key_id
from shared.topics import DeviceTopics
from tests.fixtures.broker import Broker, MqttProbe

KEY = Ed25519PrivateKey.generate()
_SEQ = iter(range(int(time.time() * 1000), 2**62))
NOW = 1_700_000_000_000
EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))


def _signed(topics: DeviceTopics, name: str, rid: str, **args: Any) -> bytes:
    body = build_body(name, Target(fleet=topics.fleet, device=topics.device_id), request_id=rid, seq=next(_SEQ),
                      now_ms=int(time.time() * 1000), expires_in_s=60, args=args)
    return sign_command(body, KEY)


def test_the_state_lists_the_second_model_and_each_stream_reports_its_models_version() -> None:
    sim = Simulation(SimOptions(devices=1, streams=4, version=3, second_model="people"))
    device = sim.devices[0]
    state = StatePayload.model_validate_json(device.state_payload(NOW))
    assert (state.model.name, state.model.version, state.model.streams) == ("digits", 3, ["cam0", "cam1"])
    assert [(m.name, m.version, m.streams) for m in state.models] == [("people", 1, ["cam2", "cam3"])]
    tel = TelemetryPayload.model_validate(json.loads(device.telemetry_payload(NOW, 1.0)))
    assert tel.streams is not None
    assert {name: f["model_version"] for name, f in tel.streams.items()} == {"cam0": 3, "cam1": 3, "cam2": 1,
                                                                               "cam3": 1}


def test_a_single_model_device_names_no_further_models_and_still_reports_stream_versions() -> None:
    device = Simulation(SimOptions(devices=1, streams=2, version=2)).devices[0]
    state = StatePayload.model_validate_json(device.state_payload(NOW))
    assert state.models == [] and state.model.streams == []
    tel = TelemetryPayload.model_validate(json.loads(device.telemetry_payload(NOW, 1.0)))
    assert tel.streams is not None and {f["model_version"] for f in tel.streams.values()} == {2}


@pytest.mark.parametrize(("over", "says"), [
    ({"streams": 1}, "--second-model needs --streams 2 or more"),
    ({"streams": 0}, "--second-model needs --streams 2 or more"),
    ({"streams": 4, "second_model": "digits"}, "--second-model must differ from --model"),
    ({"streams": 4, "second_model": "bad/name"}, "second model"),
])
def test_a_second_model_the_simulator_cannot_serve_is_refused_in_one_line(over: dict[str, Any], says: str) -> None:
    options: dict[str, Any] = {"devices": 1, "second_model": "people", **over}
    with pytest.raises(SimulatorError, match=says):
        Simulation(SimOptions(**options))


def test_the_cli_refuses_a_second_model_without_streams_in_one_line() -> None:
    done = subprocess.run([EDGEFERRY, "sim", "--second-model", "people", "--broker", "127.0.0.1:1", "--duration",
                           "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip() == ("error: --second-model needs --streams 2 or more: it serves the last half of a "
                                   "device's streams")


@pytest.fixture
def running(mosquitto: Broker) -> Iterator[Simulation]:
    host = ThreadedSimulation(SimOptions(
        devices=1, host=mosquitto.host, port=mosquitto.port, fleet="simm", rate_hz=5.0, install_s=0.1,
        keepalive_s=5, trusted={key_id(KEY.public_key()): KEY.public_key()}, streams=4, second_model="people"))
    try:
        yield host.start()
    finally:
        host.stop()


def test_a_deploy_naming_the_second_model_moves_it_alone(running: Simulation, mosquitto: Broker) -> None:
    t = running.devices[0].topics
    probe = MqttProbe(mosquitto, f"{t.base}/#")

    def reply(rid: str) -> dict[str, Any]:
        return dict(probe.wait_for(lambda m: m.topic == t.reply("deploy") and m.json()["id"] == rid, 10).json())

    probe.client.publish(t.cmd("deploy"), _signed(t, "deploy", "d1", model="people", version=4), qos=1)
    assert reply("d1")["ok"]
    state = probe.wait_for(lambda m: m.topic == t.state and m.json()["models"][0]["version"] == 4, 10,
                           "a state with people v4").json()
    assert state["model"]["version"] == 1  # the main model stayed where it was
    tel = probe.wait_for(lambda m: m.topic == t.telemetry and m.json()["streams"]["cam2"]["model_version"] == 4,
                         10, "telemetry with cam2 on people v4").json()
    assert tel["streams"]["cam0"]["model_version"] == 1 and tel["model_version"] == 1

    probe.client.publish(t.cmd("deploy"), _signed(t, "deploy", "d2", model="cars", version=2), qos=1)
    refused = reply("d2")
    assert not refused["ok"] and "cars" in refused["error"] and "people" in refused["error"]

    probe.client.publish(t.cmd("deploy"), _signed(t, "deploy", "d3", model="digits", version=2), qos=1)
    assert reply("d3")["ok"]
    state = probe.wait_for(lambda m: m.topic == t.state and m.json()["model"]["version"] == 2, 10,
                           "a state with digits v2").json()
    assert state["models"][0]["version"] == 4


def _installed(commands: list[tuple[str, dict[str, Any]]]) -> tuple[int, float, list[bool]]:
    """Send each signed command to a second-model device (people at v3) at once, let every install finish; the
    people version it ends on, how many swaps it counted and whether each reply was ok."""
    sim = Simulation(SimOptions(devices=1, streams=4, second_model="people", install_s=0.01,
                                trusted={key_id(KEY.public_key()): KEY.public_key()}))
    device = sim.devices[0]
    device.side["people"].serve(3)
    loop = asyncio.new_event_loop()
    sim.loop = loop
    client = _Client(sim, device)  # never connected: what it would publish is dropped
    oks = []
    for i, (name, args) in enumerate(commands):
        action = device.on_command(name, _signed(device.topics, name, f"r{i}", **args), int(time.time() * 1000))
        assert action.reply is not None
        oks.append(bool(json.loads(action.reply[1])["ok"]))
        sim.act(client, action)
    loop.run_until_complete(asyncio.sleep(0.2))
    loop.close()
    return device.side["people"].version, device.counters["swaps"], oks


def test_two_quick_rollbacks_of_the_second_model_install_one_version_once() -> None:
    assert _installed([("rollback", {"model": "people"}), ("rollback", {"model": "people"})]) == (2, 1.0,
                                                                                                   [True, True])


def test_a_second_model_deploy_overtaken_by_another_serves_only_the_later_one() -> None:
    assert _installed([("deploy", {"model": "people", "version": 4}),
                       ("deploy", {"model": "people", "version": 5})]) == (5, 1.0, [True, True])
