"""The `cloud` end of a HIL lab: Mosquitto and an S3 endpoint (moto's server) on the cloud namespace's loopback,
a fault proxy in front of each on the veth address (so every byte the device exchanges is counted and can be
delayed, stalled or reset), a publisher that puts signed packages into the bucket, and an observer that records
every MQTT message from the device with its arrival time (the fleet side's view).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import HilError
from hil.fault_proxy import FaultProxy
from hil.nsenter import NsWorker, thread_in_netns
from hil.pair import PairHarness

log = logging.getLogger(__name__)

MOSQUITTO = Path("/usr/sbin/mosquitto")
BROKER_PORT = 1883
S3_PORT = 5000
MQTT_PROXY_PORT = 18830
S3_PROXY_PORT = 19000
ACCESS_KEY = "hil-access"
SECRET_KEY = "hil-secret"
BUCKET = "edgeferry-hil"


def _wait_port(worker: NsWorker, host: str, port: int, timeout: float, proc: subprocess.Popen[Any] | None) -> None:
    """Until host:port (inside the worker's namespace) accepts a connection."""

    def probe() -> bool:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.call(probe):
            return
        if proc is not None and proc.poll() is not None:
            raise HilError(f"service for port {port} exited with {proc.returncode} before listening")
        time.sleep(0.1)
    raise HilError(f"nothing listened on {host}:{port} in {worker.name} within {timeout:g} s")


@dataclass
class Received:
    """One message the observer saw."""

    t: float  # arrival, unix seconds
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        """Payload as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


class CloudSide:
    """Everything on the cloud end of the link; start() brings it up, close() removes it (also when half up)."""

    def __init__(self, lab: PairHarness, workdir: Path, seed: int = 0) -> None:
        self.lab = lab
        self.workdir = workdir
        self.seed = seed
        self.worker = NsWorker(lab.cloud)
        self.broker: subprocess.Popen[Any] | None = None
        self.s3: subprocess.Popen[Any] | None = None
        self.mqtt_proxy: FaultProxy | None = None
        self.s3_proxy: FaultProxy | None = None
        self._objects: dict[str, bytes] = {}  # everything published, to refill a restarted S3 endpoint
        self._client: Any = None
        self.observer = Observer(self)

    # -- addresses the device uses ----------------------------------------------------------------------------------

    @property
    def mqtt_addr(self) -> tuple[str, int]:
        """Broker as the device dials it (through the MQTT proxy)."""
        return self.lab.cloud_ip, MQTT_PROXY_PORT

    @property
    def s3_url(self) -> str:
        """S3 endpoint as the device dials it (through the S3 proxy)."""
        return f"http://{self.lab.cloud_ip}:{S3_PROXY_PORT}"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> CloudSide:
        """Broker, S3 endpoint, both proxies and the observer."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_broker()
        self.start_s3()
        self.mqtt_proxy = FaultProxy("127.0.0.1", BROKER_PORT, listen_host=self.lab.cloud_ip,
                                     listen_port=MQTT_PROXY_PORT, seed=self.seed, max_lifetime_s=3600,
                                     netns=self.lab.cloud).start()
        self.s3_proxy = FaultProxy("127.0.0.1", S3_PORT, listen_host=self.lab.cloud_ip, listen_port=S3_PROXY_PORT,
                                   seed=self.seed + 1, max_lifetime_s=3600, netns=self.lab.cloud).start()
        self.worker.call(self._make_bucket)
        self.observer.start()
        return self

    def close(self) -> None:
        """Stop the observer, the proxies and both services."""
        self.observer.stop()
        for proxy in (self.mqtt_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.stop()
        self.kill_broker(clean=True)
        self.kill_s3()
        self.worker.close()

    # -- broker -------------------------------------------------------------------------------------------------

    def start_broker(self) -> None:
        """Mosquitto with persistence (autosave every second), so a kill -9 loses at most that second."""
        if self.broker is not None and self.broker.poll() is None:
            return
        if not MOSQUITTO.exists():
            raise HilError(f"{MOSQUITTO} is missing: install mosquitto (`apt-get install -y mosquitto`)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {BROKER_PORT} 127.0.0.1", "allow_anonymous true", "persistence true",
            f"persistence_location {self.workdir}/", "autosave_interval 1", "max_queued_messages 100000",
            "max_inflight_messages 100", f"log_dest file {self.workdir / 'mosquitto.log'}",
            *(["user root"] if os.geteuid() == 0 else []),
        ]) + "\n")
        self.broker = self.lab.spawn_in(self.lab.cloud, [str(MOSQUITTO), "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.worker, "127.0.0.1", BROKER_PORT, 15, self.broker)

    def kill_broker(self, clean: bool = False) -> None:
        """SIGKILL (as a crash) or SIGTERM (clean) the broker."""
        if self.broker is None:
            return
        if self.broker.poll() is None:
            self.broker.send_signal(signal.SIGTERM if clean else signal.SIGKILL)
            try:
                self.broker.wait(10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait(10)
        self.lab.forget(self.broker)
        self.broker = None

    # -- S3 -----------------------------------------------------------------------------------------------------

    def start_s3(self) -> None:
        """moto's S3 server; after a restart the bucket and every object published so far are put back."""
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.s3 = self.lab.spawn_in(self.lab.cloud, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                                     str(S3_PORT)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env)
        _wait_port(self.worker, "127.0.0.1", S3_PORT, 30, self.s3)
        if self._objects:
            self.worker.call(self._make_bucket)
            for key, data in self._objects.items():
                self.worker.call(self._put, key, data)

    def kill_s3(self) -> None:
        """SIGKILL the S3 endpoint (its in-memory objects go with it)."""
        if self.s3 is None:
            return
        if self.s3.poll() is None:
            self.s3.kill()
            self.s3.wait(10)
        self.lab.forget(self.s3)
        self.s3 = None

    def _boto(self) -> Any:
        if self._client is None:
            import boto3  # the edge extra brings boto3; imported in the cloud thread so its sockets live there

            self._client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{S3_PORT}",
                                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                        region_name="us-east-1")
        return self._client

    def _make_bucket(self) -> None:
        self._boto().create_bucket(Bucket=BUCKET)

    def _put(self, key: str, data: bytes) -> None:
        self._boto().put_object(Bucket=BUCKET, Key=key, Body=data)

    def put(self, key: str, data: bytes) -> None:
        """Put one object into the bucket (remembered for a restart of the endpoint)."""
        self._objects[key] = data
        self.worker.call(self._put, key, data)


class Observer:
    """A persistent-session QoS 1 subscriber to the fleet's topics, inside the cloud namespace."""

    def __init__(self, cloud: CloudSide) -> None:
        self.cloud = cloud
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    def start(self) -> None:
        """Connect (retrying across broker restarts) and subscribe to edgeferry/#."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="hil-observer",
                             protocol=MQTTProtocolVersion.MQTTv5)
        client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, p: Any) -> None:
            c.subscribe([("edgeferry/#", SubscribeOptions(qos=1))])

        def on_subscribe(c: Any, userdata: Any, mid: Any, reasons: Any, p: Any) -> None:
            self._subscribed.set()

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            with self._cond:
                self.messages.append(Received(time.time(), msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        self._client = client

        def loop() -> None:
            client.connect_async("127.0.0.1", BROKER_PORT, keepalive=10, clean_start=False, properties=props)
            client.loop_forever(retry_first_connection=True)

        self._thread = thread_in_netns(self.cloud.lab.cloud, loop, "hil-observer")
        self._thread.start()
        if not self._subscribed.wait(15):
            raise HilError("the observer could not subscribe to the lab broker within 15 s")

    def stop(self) -> None:
        """Disconnect and end the network thread."""
        if self._client is not None and self._thread is not None:
            self._client.disconnect()
            self._thread.join(10)
        self._thread = None

    def since(self, t0: float, suffix: str | None = None) -> list[Received]:
        """Messages that arrived at or after t0 (unix s), optionally only topics ending with suffix."""
        with self._cond:
            return [m for m in self.messages if m.t >= t0 and (suffix is None or m.topic.endswith(suffix))]

    def wait_for(self, pred: Any, timeout: float, t0: float = 0.0) -> Received | None:
        """The first message since t0 matching pred, waiting up to timeout; None when none came."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for m in self.messages[seen:]:
                    if m.t >= t0 and pred(m):
                        return m
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
