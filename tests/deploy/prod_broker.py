"""The production broker (deploy/mosquitto) on loopback for tests: the shipped config with host paths and listener
addresses changed, accounts made by the real provision.sh, and an MQTT 5 client per account that records PUBACK
reason codes. The fixtures `prod` and `login` (tests/deploy/conftest.py) build on it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fixtures.broker import Broker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PROVISION = DEPLOY / "provision.sh"
TLS_KEYS = ("cafile", "certfile", "keyfile", "tls_version", "require_certificate")
NOT_AUTHORIZED = 135  # MQTT 5 reason code in the PUBACK of a publish the ACL refuses
ACCEPTED_BELOW = 128  # 0 success, 16 "no matching subscribers": both accepted
DEVICES = (("lab", "cam-1"), ("lab", "cam-2"), ("other", "cam-1"))  # cam-1 twice: same id, another fleet
ROLES = ("edgeferry-ops", "edgeferry-fleet", "edgeferry-dashboard", "homeassistant")
SENSOR = "edgeferry/lab/cam-1/sensor/vibration"


def provision(workdir: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real provisioning script against the broker files in workdir."""
    extra = ["--password-stdin"] if password is not None else []
    return subprocess.run(
        ["bash", str(PROVISION), *args, "--dir", str(workdir), *extra],
        input=f"{password}\n" if password is not None else None, capture_output=True, text=True, timeout=30,
    )


def pw(user: str) -> str:
    """Each test account's password."""
    return f"pw-{user}"


@dataclass
class ProdBroker:
    """The production config running on loopback: devices' listener on `port`, services' on `services_port`."""

    broker: Broker
    port: int
    services_port: int
    dir: Path

    def log(self) -> str:
        """The broker's log so far."""
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def reload(self) -> None:
        """SIGHUP, as `systemctl reload mosquitto` sends: re-reads the ACL and the password files."""
        before = self.log().count("Reloading config")
        os.kill(int((self.dir / "mosquitto.pid").read_text()), signal.SIGHUP)
        wait_until(lambda: self.log().count("Reloading config") > before, what="broker reload")


def local_conf(workdir: Path, services_port: int) -> str:
    """The production config with only host paths and listener addresses changed (TLS is covered by the link
    tests); every other line is kept as shipped."""
    out = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        key, _, value = line.partition(" ")
        if line == "listener 8883":
            out.append("listener {port} 127.0.0.1")
        elif line == "listener 8884":
            out.append(f"listener {services_port} 127.0.0.1")
        elif key == "listener":
            raise AssertionError(f"unexpected listener line {line!r}: adapt this test")
        elif key in TLS_KEYS:
            continue
        elif key in ("password_file", "acl_file"):
            out.append(f"{key} {workdir / Path(value).name}")
        elif key == "persistence_location":
            out.append(f"persistence_location {workdir}/")
        elif key == "log_dest":
            out.append(f"log_dest file {workdir / 'mosquitto.log'}")
        else:
            out.append(line)
    out.append(f"pid_file {workdir / 'mosquitto.pid'}")
    if os.geteuid() == 0:
        out.append("user root")
    return "\n".join(out)


def wait_until(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


class Account:
    """One MQTT 5 client logged in as a user; records messages, PUBACK reason codes and disconnects."""

    def __init__(self, port: int, user: str, *, client_id: str = "", persistent: bool = False,
                 password: str | None = None) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}/test",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, pw(user) if password is None else password)
        self.messages: list[tuple[str, bytes, bool]] = []
        self.disconnects: list[str] = []
        self.session_present: bool | None = None
        self.connect_reason: str | None = None
        self._acks: dict[int, int] = {}
        self._subacks: set[int] = set()
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self._note(lambda: self.disconnects.append(str(rc)))
        self.client.on_message = lambda c, u, m: self._note(
            lambda: self.messages.append((m.topic, bytes(m.payload), bool(m.retain))))
        self.client.on_publish = lambda c, u, mid, rc, p: self._note(lambda: self._acks.__setitem__(mid, rc.value))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._note(lambda: self._subacks.add(mid))
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=props)
        self.client.loop_start()
        self._wait(lambda: self.connect_reason is not None, "CONNACK")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._note(lambda: setattr(self, "session_present", bool(flags.session_present)))
        self._note(lambda: setattr(self, "connect_reason", str(reason)))
        if reason.is_failure:
            client.disconnect()

    def _note(self, change: Callable[[], None]) -> None:
        with self._cond:
            change()
            self._cond.notify_all()

    def _wait(self, pred: Callable[[], bool], what: str, timeout: float = 10) -> None:
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise AssertionError(f"no {what} within {timeout}s")

    @property
    def accepted(self) -> bool:
        """Whether the broker accepted the login."""
        return self.connect_reason == "Success"

    def subscribe(self, *filters: str) -> Account:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        for f in filters:
            _, mid = self.client.subscribe(f, qos=1)
            self._wait(lambda mid=mid: mid in self._subacks, f"SUBACK for {f}")
        return self

    def publish(self, topic: str, payload: bytes = b"x", retain: bool = False) -> int:
        """QoS 1 publish; returns the reason code of the broker's PUBACK (0: accepted)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self._acks, f"PUBACK for {topic}")
        return self._acks[info.mid]

    def topics(self) -> list[str]:
        """Topics of the messages received so far, in order."""
        with self._cond:
            return [t for t, _, _ in self.messages]

    def wait_topic(self, topic: str, timeout: float = 10) -> bytes:
        """Payload of the first message on topic (already received or arriving)."""
        found: list[bytes] = []

        def seen() -> bool:
            found[:] = [p for t, p, _ in self.messages if t == topic][:1]
            return bool(found)

        self._wait(seen, f"message on {topic} (got {self.topics()[-5:]})", timeout)
        return found[0]

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
