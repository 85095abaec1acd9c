"""The production broker config (deploy/mosquitto) loads in a real mosquitto and isolates devices per client id."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.link.mqtt import MqttLink
from shared.topics import DeviceTopics
from tests.fixtures.broker import Broker, MqttProbe

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
TLS_KEYS = ("cafile", "certfile", "keyfile", "tls_version", "require_certificate")


def local_conf(tmp_path: Path) -> str:
    """The production config with only host paths and the listener changed (TLS is covered by the link tests)."""
    out = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            out.append("listener {port} 127.0.0.1")
        elif key in TLS_KEYS:
            continue
        elif key == "password_file":
            out.append(f"password_file {tmp_path / 'passwd'}")
        elif key == "acl_file":
            out.append(f"acl_file {DEPLOY / 'edgeferry.acl'}")
        elif key == "persistence_location":
            out.append(f"persistence_location {tmp_path}/")
        elif key == "log_dest":
            out.append(f"log_dest file {tmp_path / 'mosquitto.log'}")
        else:
            out.append(line)
    if os.geteuid() == 0:
        out.append("user root")
    return "\n".join(out)


def add_user(tmp_path: Path, user: str, password: str) -> None:
    pw = tmp_path / "passwd"
    flags = ["-b"] if pw.exists() else ["-c", "-b"]
    subprocess.run(["mosquitto_passwd", *flags, str(pw), user, password], check=True, capture_output=True)


def wait_until(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def test_production_config_isolates_each_device_to_its_own_topics(
    mosquitto_factory: Callable[..., Broker], mqtt_probe: Callable[..., MqttProbe], tmp_path: Path
) -> None:
    for user in ("cam-1", "cam-2", "edgeferry-ops"):
        add_user(tmp_path, user, f"pw-{user}")
    broker = mosquitto_factory(raw_conf=local_conf(tmp_path))
    listeners = [line for line in (tmp_path / "mosquitto.log").read_text().splitlines() if "listen socket" in line]
    assert listeners and all(f"port {broker.port}." in line for line in listeners), listeners
    ops = mqtt_probe(broker, "edgeferry/#", username="edgeferry-ops", password="pw-edgeferry-ops")

    mine, other = DeviceTopics("lab", "cam-1"), DeviceTopics("lab", "cam-2")
    cfg = MqttConfig(host=broker.host, port=broker.port, username="cam-1", password="pw-cam-1",
                     outbox_path=tmp_path / "o.sqlite", keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1)
    # Even claiming another device's client id does not help: the broker uses the username.
    link = MqttLink(cfg, mine, client_id="cam-2")
    handled: list[bytes] = []
    link.subscribe(mine.cmd_filter, lambda t, p: handled.append(p))
    try:
        link.start()
        assert ops.wait_for(lambda m: m.topic == mine.status).text == "online"
        link.publish_json(other.telemetry, {"seq": 0})  # someone else's topic: refused
        link.publish_json(mine.telemetry, {"seq": 1})
        assert ops.wait_for(lambda m: m.topic == mine.telemetry).json()["seq"] == 1
        assert ops.on(other.telemetry) == []
        wait_until(lambda: link.counters.rejected == 1, what="refused publish counted")

        deadline = time.monotonic() + 10
        while not handled:  # the device may read its own commands
            assert time.monotonic() < deadline, "device never received its command"
            ops.publish(mine.cmd("ping"), b'{"id": "1"}')
            time.sleep(0.1)
    finally:
        link.stop(timeout_s=1)
    ops.wait_for(lambda m: m.topic == mine.status and m.text == "stopped", what="stopped status")


@pytest.mark.parametrize("bad", ["cam-1", "edgeferry-ops"])
def test_wrong_passwords_are_refused(
    mosquitto_factory: Callable[..., Broker], tmp_path: Path, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    add_user(tmp_path, bad, "right")
    broker = mosquitto_factory(raw_conf=local_conf(tmp_path))
    cfg = MqttConfig(host=broker.host, port=broker.port, username=bad, password="wrong",
                     outbox_path=tmp_path / "o.sqlite", reconnect_min_s=1, reconnect_max_s=1)
    link = MqttLink(cfg, DeviceTopics("lab", "cam-1"))
    with caplog.at_level("ERROR", logger="edge.link.mqtt"):
        link.start()
        try:
            wait_until(lambda: "refused the connection" in caplog.text, what="refusal logged")
            assert not link.connected
        finally:
            link.stop(timeout_s=0)
