"""The simulator against a real Mosquitto: devices are real MQTT clients with retained status/state and telemetry,
answer signed commands and refuse unsigned ones, converge on signed desired state, behave per their share, and
their Last Will fires when they go offline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.sim.runner import SimOptions, Simulation, ThreadedSimulation
from shared.command_signing import Target, build_body, sign_command
from shared.desired_state import DesiredState, sign_desired
from shared.signing import key_id
from shared.topics import DeviceTopics
from tests.fixtures.broker import Broker, MqttProbe, Received

KEY = Ed25519PrivateKey.generate()
_SEQ = iter(range(int(time.time() * 1000), 2**62))


def _options(broker: Broker, devices: int, **over: Any) -> SimOptions:
    kw: dict[str, Any] = {"devices": devices, "host": broker.host, "port": broker.port, "fleet": "simt",
                          "groups": ["yard"], "rate_hz": 5.0, "trusted": {key_id(KEY.public_key()): KEY.public_key()},
                          "install_s": 0.1, "offline_s": 1.5, "keepalive_s": 5}
    kw.update(over)
    return SimOptions(**kw)


@pytest.fixture
def sim_factory(mosquitto: Broker) -> Iterator[Any]:
    running: list[ThreadedSimulation] = []

    def make(devices: int, **over: Any) -> tuple[ThreadedSimulation, Simulation]:
        host = ThreadedSimulation(_options(mosquitto, devices, **over))
        running.append(host)
        return host, host.start()

    yield make
    for host in running:
        host.stop()


def _signed(topics: DeviceTopics, name: str, rid: str, **args: Any) -> bytes:
    body = build_body(name, Target(fleet=topics.fleet, device=topics.device_id), request_id=rid, seq=next(_SEQ),
                      now_ms=int(time.time() * 1000), expires_in_s=60, args=args)
    return sign_command(body, KEY)


def _desired(topics: DeviceTopics, version: int, seq: int) -> bytes:
    return sign_desired(DesiredState(fleet=topics.fleet, device_id=topics.device_id, model="digits", version=version,
                                     issued_at_ms=int(time.time() * 1000), seq=seq), KEY)


def _first(probe: MqttProbe, topic: str) -> Received:
    return probe.wait_for(lambda m: m.topic == topic, 10, f"a message on {topic}")


def _latest(probe: MqttProbe, topic: str, pred: Any = lambda d: True, timeout: float = 10) -> dict[str, Any]:
    since = len(probe.messages)
    msg = probe.wait_for(lambda m: m.topic == topic and probe.messages.index(m) >= since and pred(m.json()),
                         timeout, f"a message on {topic}")
    return dict(msg.json())


def test_devices_are_real_clients_with_retained_status_state_and_full_telemetry(
    sim_factory: Any, mosquitto: Broker
) -> None:
    _, sim = sim_factory(5)
    probe = MqttProbe(mosquitto, "edgeferry/simt/+/status", "edgeferry/simt/+/state", "edgeferry/simt/+/telemetry")
    ids = sorted(d.device_id for d in sim.devices)
    for t in (DeviceTopics("simt", i) for i in ids):
        status = _first(probe, t.status)
        assert status.text == "online" and status.retain  # a late subscriber got the retained one
        state = _first(probe, t.state).json()
        assert state["groups"] == ["yard"] and state["telemetry_interval_s"] == 0.2
        assert state["model"] == {**state["model"], "name": "digits", "version": 1}
        tel = _first(probe, t.telemetry).json()
        for figure in ("e2e_ms_p95", "fps", "drops", "cmd_errors", "package_rejects", "thread_errors",
                       "model_version", "conf_mean", "low_conf_share", "results_window"):
            assert isinstance(tel[figure], float), figure
        assert sum(tel["class_counts"].values()) == tel["results_window"] == 2.0


def test_signed_commands_are_answered_and_unsigned_or_forged_ones_refused(sim_factory: Any, mosquitto: Broker) -> None:
    _, sim = sim_factory(1)
    t = sim.devices[0].topics
    probe = MqttProbe(mosquitto, f"{t.base}/#")
    probe.client.publish(t.cmd("ping"), _signed(t, "ping", "p1"), qos=1)
    ok = probe.wait_for(lambda m: m.topic == t.reply("ping") and m.json()["id"] == "p1", 10).json()
    assert ok["ok"] and ok["result"]["model"]["version"] == 1
    probe.client.publish(t.cmd("deploy"), json.dumps({"id": "u1", "version": 2}).encode(), qos=1)
    unsigned = probe.wait_for(lambda m: m.topic == t.reply("deploy") and m.json()["id"] == "u1", 10).json()
    assert not unsigned["ok"] and "unsigned" in unsigned["error"]
    forged = sign_command(build_body("deploy", Target(fleet=t.fleet, device=t.device_id), request_id="f1",
                                     seq=next(_SEQ), now_ms=int(time.time() * 1000), expires_in_s=60,
                                     args={"version": 2}), Ed25519PrivateKey.generate())
    probe.client.publish(t.cmd("deploy"), forged, qos=1)
    refused = probe.wait_for(lambda m: m.topic == t.reply("deploy") and m.json()["id"] == "f1", 10).json()
    assert not refused["ok"] and "not in this device's" in refused["error"]
    tel = _latest(probe, t.telemetry, lambda d: d["cmd_refused"] == 2)
    assert tel["cmd_refused_unsigned"] == 1 and tel["cmd_refused_unknown_key"] == 1 and tel["model_version"] == 1

    probe.client.publish(t.cmd("deploy"), _signed(t, "deploy", "d1", version=2), qos=1)
    assert probe.wait_for(lambda m: m.topic == t.reply("deploy") and m.json()["id"] == "d1", 10).json()["ok"]
    assert _latest(probe, t.state, lambda d: d["model"]["version"] == 2)["model"]["version"] == 2


def test_devices_converge_on_retained_desired_state_and_refuse_an_older_one(
    sim_factory: Any, mosquitto: Broker
) -> None:
    probe = MqttProbe(mosquitto, "edgeferry/simt/#")
    first = DeviceTopics("simt", "sim-0000")
    # Published before the device exists: it converges when it comes up, as an agent back from offline does.
    probe.client.publish(first.desired, _desired(first, 3, seq=20), qos=1, retain=True).wait_for_publish(5)
    _, sim = sim_factory(2)
    assert _latest(probe, first.state, lambda d: d["model"]["version"] == 3)["desired_version"] == 3
    probe.client.publish(first.desired, _desired(first, 4, seq=10), qos=1, retain=True)
    tel = _latest(probe, first.telemetry, lambda d: d["desired_refused"] == 1)
    assert tel["model_version"] == 3
    other = sim.devices[1].topics
    assert _latest(probe, other.telemetry)["model_version"] == 1  # not addressed to it


def test_behaviours_shape_figures_crash_and_last_will(sim_factory: Any, mosquitto: Broker) -> None:
    host, sim = sim_factory(5, behaviours="slow=0.2,unconfident=0.2,crash_on_install=0.2,offline=0.2")
    probe = MqttProbe(mosquitto, "edgeferry/simt/#")
    by_kind = {d.behaviour: d.topics for d in sim.devices}
    assert set(by_kind) == {"good", "slow", "unconfident", "crash_on_install", "offline"}
    before = {k: _latest(probe, t.telemetry) for k, t in by_kind.items()}
    boot = {k: b["boot_id"] for k, b in before.items()}
    for kind, t in by_kind.items():
        probe.client.publish(t.cmd("deploy"), _signed(t, "deploy", f"d-{kind}", version=2), qos=1)

    gone = probe.wait_for(lambda m: m.topic == by_kind["offline"].status and m.text == "offline", 10, "Last Will")
    assert gone.text == "offline"
    after = {k: _latest(probe, by_kind[k].telemetry, lambda d: d["model_version"] == 2)
             for k in ("good", "slow", "unconfident")}
    assert after["slow"]["e2e_ms_p95"] > 2.5 * after["good"]["e2e_ms_p95"]
    assert after["unconfident"]["conf_mean"] < after["good"]["conf_mean"] - 0.25
    crashed = _latest(probe, by_kind["crash_on_install"].telemetry, lambda d: d["package_rejects"] == 1)
    assert crashed["model_version"] == 1 and crashed["boot_id"] != boot["crash_on_install"]
    back = _latest(probe, by_kind["offline"].state, lambda d: d["model"]["version"] == 2, timeout=15)
    assert back["boot_id"] == boot["offline"]
    assert probe.wait_for(lambda m: m.topic == by_kind["offline"].status and m.text == "online"
                          and probe.messages.index(m) > probe.messages.index(gone), 10).text == "online"
    # The API a test drives: one device off the broker for a while, its will fires, then it returns.
    target = by_kind["good"]
    host.call(lambda: sim.go_offline(target.device_id, 1.0))
    assert probe.wait_for(lambda m: m.topic == target.status and m.text == "offline", 10).text == "offline"
