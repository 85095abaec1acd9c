"""Runs simulated devices as real MQTT 5 clients (paho) on one asyncio loop: no thread per device.

paho's external-loop interface does the I/O: each client's socket is registered with the loop (add_reader /
add_writer call loop_read / loop_write), and one ticker calls loop_misc on every client for keepalives. Status is
retained with a Last Will of `offline`; an 'offline' behaviour disconnects with reason 0x04 so the broker publishes
that will, as it would for a device that lost power.

`async with Simulation(options) as sim:` inside a loop, or `ThreadedSimulation(options)` for synchronous callers
(tests, the benchmark) that host the loop on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from fleet.errors import SimulatorError
from fleet.sim.behaviour import Behaviour, assign, parse_mix
from fleet.sim.detector import DetectorSim
from fleet.sim.device import Action, SimDevice
from fleet.sim.models import SideModel, second_model_streams
from fleet.sim.sensor import SensorSim, assign_sensor, parse_sensor_mix
from fleet.sim.streams import StreamsSim, stream_names
from shared.errors import KeyFileError
from shared.signing import key_id, load_public_key
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, DeviceTopics

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_LABELS = [str(i) for i in range(10)]


@dataclass
class SimOptions:
    """What to simulate and where; the CLI and tests build one."""

    devices: int
    host: str = "127.0.0.1"
    port: int = 1883
    fleet: str = "sim"
    groups: list[str] = field(default_factory=lambda: ["sim"])
    rate_hz: float = 1.0
    behaviours: str = "good=1"
    command_keys: list[Path] = field(default_factory=list)
    trusted: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    model: str = "digits"
    version: int = 1
    prefix: str = "sim"
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    install_s: float = 0.5
    offline_s: float = 5.0
    keepalive_s: int = 30
    qos: int = 1
    seed: int = 0
    connect_batch: int = 200
    # A sensor behaviour mix ('normal=0.8,faulty=0.2'): every device also plays a sensor device (fleet.sim.sensor).
    sensor: str | None = None
    # The first this many devices also play detectors: object events, snapshots, zone counts (fleet.sim.detector).
    detectors: int = 0
    # Camera streams each device reports per-stream figures for (0: a single-stream agent, no `streams` object).
    streams: int = 0
    # With streams: the last stream of every device stalls (rates 0, disconnected, errors growing).
    stalled_stream: bool = False
    # With streams (2 or more): every device also serves this model (from v1) on the last half of its streams.
    second_model: str | None = None


def load_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted command keys by key id; SimulatorError with the file named when one cannot be used."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = load_public_key(path)
        except KeyFileError as exc:
            raise SimulatorError(str(exc)) from exc
        keys[key_id(key)] = key
    return keys


class _Client:
    """One simulated device's paho client wired to the loop."""

    def __init__(self, sim: Simulation, device: SimDevice) -> None:
        self.sim, self.device = sim, device
        self.connected = asyncio.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"{sim.options.prefix}-{device.device_id}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_queued_messages_set(1000)
        c = self.client
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.will_set(device.topics.status, STATUS_OFFLINE, qos=1, retain=True)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.sim.loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.sim.loop.remove_reader(sock)
        self.sim.loop.remove_writer(sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.sim.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.sim.loop.remove_writer(sock)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.device.device_id, reason)
            return
        t = self.device.topics
        client.subscribe([(t.cmd_filter, 1), (t.desired, 1)])
        self.device.online = True
        self.publish(t.status, STATUS_ONLINE.encode(), retain=True)
        self.publish(t.state, self.device.state_payload(self.sim.now_ms()), retain=True)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.device.online = False
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        t = self.device.topics
        now = self.sim.now_ms()
        if msg.topic == t.desired:
            action = self.device.on_desired(bytes(msg.payload))
        else:
            name = t.command_name(msg.topic)
            if name is None or msg.retain:  # like the agent: a retained command is never run
                return
            action = self.device.on_command(name, bytes(msg.payload), now)
        self.sim.act(self, action)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self.device.online:
            self.client.publish(topic, payload, qos=self.sim.options.qos, retain=retain)

    def connect(self) -> None:
        o = self.sim.options
        try:
            self.client.connect(o.host, o.port, keepalive=o.keepalive_s)
        except OSError as exc:
            raise SimulatorError(f"cannot reach the MQTT broker at {o.host}:{o.port}: {exc.strerror or exc}") from exc

    def drop_with_will(self) -> None:
        """Disconnect so the broker publishes the Last Will (as for a device that lost power)."""
        self.device.online = False
        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))


class Simulation:
    """N simulated devices on the running asyncio loop; an async context manager."""

    def __init__(self, options: SimOptions) -> None:
        if options.devices < 1:
            raise SimulatorError(f"--devices must be at least 1, got {options.devices}")
        if not 0 < options.rate_hz <= 100:
            raise SimulatorError(f"--rate must be above 0 and at most 100 Hz, got {options.rate_hz}")
        if not 0 <= options.detectors <= options.devices:
            raise SimulatorError(f"--detectors must be between 0 and --devices ({options.devices}), "
                                 f"got {options.detectors}")
        self.options = options
        trusted = dict(options.trusted) or load_keys(options.command_keys)
        mix = parse_mix(options.behaviours)
        kinds: list[Behaviour] = assign(mix, options.devices)
        width = max(4, len(str(options.devices - 1)))
        self.devices = [
            SimDevice(DeviceTopics(options.fleet, f"{options.prefix}-{i:0{width}d}"), kinds[i], options.model,
                      options.version, list(options.groups), trusted, list(options.labels), 1 / options.rate_hz,
                      seed=options.seed)
            for i in range(options.devices)
        ]
        if options.sensor is not None:
            sensor_kinds = assign_sensor(parse_sensor_mix(options.sensor), options.devices)
            for d, kind in zip(self.devices, sensor_kinds, strict=True):
                d.sensor = SensorSim(kind, f"{options.seed}:{d.device_id}")
        for d in self.devices[:options.detectors]:
            d.detector = DetectorSim(f"{options.seed}:{d.device_id}", d.version)
        if options.streams:
            try:
                stalled = stream_names(options.streams)[-1] if options.stalled_stream else None
                for d in self.devices:
                    d.streams = StreamsSim(options.streams, f"{options.seed}:{d.device_id}", stalled)
            except ValueError as exc:
                raise SimulatorError(str(exc)) from exc
        if options.second_model is not None:
            try:
                names = stream_names(options.streams) if options.streams > 0 else []
                served = second_model_streams(options.second_model, options.model, names)
            except ValueError as exc:
                raise SimulatorError(str(exc)) from exc
            for d in self.devices:
                d.side[options.second_model] = SideModel(options.second_model, 1, list(served))
        self.by_id = {d.device_id: d for d in self.devices}
        self._clients: list[_Client] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self.loop: asyncio.AbstractEventLoop  # the running loop, set by start()

    def now_ms(self) -> int:
        """Wall clock in Unix ms (command expiry is checked against it)."""
        return int(time.time() * 1000)

    async def __aenter__(self) -> Simulation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect every device (in batches), then start telemetry and keepalives."""
        self.loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._clients = [_Client(self, d) for d in self.devices]
        for i, c in enumerate(self._clients):
            c.connect()
            if i % self.options.connect_batch == self.options.connect_batch - 1:
                await asyncio.sleep(0)
        await self.wait_connected(timeout=max(30.0, self.options.devices / 200))
        rng = random.Random(self.options.seed)
        interval = 1 / self.options.rate_hz
        self._tasks = [self.loop.create_task(self._telemetry(c, rng.uniform(0, interval), interval))
                       for c in self._clients]
        self._tasks.append(self.loop.create_task(self._keepalive()))

    async def wait_connected(self, timeout: float = 30.0) -> None:
        """Until every device that should be online is connected; SimulatorError after timeout."""
        deadline = time.monotonic() + timeout
        while not all(c.connected.is_set() for c in self._clients):
            if time.monotonic() > deadline:
                n = sum(not c.connected.is_set() for c in self._clients)
                raise SimulatorError(f"{n} of {len(self._clients)} simulated devices did not connect to "
                                     f"{self.options.host}:{self.options.port} within {timeout:.0f} s "
                                     "(raise the broker's max_connections and ulimit -n)")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop reporting and disconnect cleanly (status stays as the device left it: 'stopped')."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for c in self._clients:
            if c.device.online:
                c.publish(c.device.topics.status, b"stopped", retain=True)
        await asyncio.sleep(0.2)
        for c in self._clients:
            c.device.online = False
            c.client.disconnect()
        await asyncio.sleep(0.1)

    async def _telemetry(self, c: _Client, phase: float, interval: float) -> None:
        await asyncio.sleep(phase)
        next_at = self.loop.time()
        while True:
            if c.device.online:
                c.publish(c.device.topics.telemetry,
                          c.device.telemetry_payload(self.now_ms(), time.monotonic() - self._started))
                for topic, payload in c.device.take_alerts():
                    c.publish(topic, payload)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - self.loop.time()))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for c in self._clients:
                if c.device.online:
                    c.client.loop_misc()

    # -- actions ----------------------------------------------------------------------------------------------

    def act(self, c: _Client, action: Action) -> None:
        """Carry out what the device decided: send its reply, start an install."""
        if action.reply is not None:
            c.publish(*action.reply)
        if action.side_install is not None:
            model, version = action.side_install
            side = c.device.side[model]
            if side.installing != version:  # the same install again (two quick rollbacks) is the one in flight
                side.installing = version
                self.loop.call_later(self.options.install_s, self._finish_side_install, c, model, version)
        if action.install is not None and c.device.installing != action.install[0]:
            version = action.install[0]
            c.device.installing = version
            if c.device.behaviour == "offline" and version > c.device.initial_version:
                self.loop.call_soon(self._go_offline, c, version)
            else:
                self.loop.call_later(self.options.install_s, self._finish_install, c, version)

    def _finish_install(self, c: _Client, version: int) -> None:
        if c.device.installing != version:
            return
        outcome = c.device.install_outcome(version)
        if outcome == "serve":
            c.device.serve(version)
        elif outcome == "crash":
            c.device.crash()
        else:
            c.device.installing = None  # never converging: keeps serving the old version, says nothing
            return
        c.publish(c.device.topics.state, c.device.state_payload(self.now_ms()), retain=True)

    def _finish_side_install(self, c: _Client, model: str, version: int) -> None:
        """A further model's install always serves (behaviours shape the main model's installs only), unless a
        later one of that model took its place."""
        if c.device.side[model].installing != version:
            return
        c.device.serve_side(model, version)
        c.publish(c.device.topics.state, c.device.state_payload(self.now_ms()), retain=True)

    def _go_offline(self, c: _Client, version: int) -> None:
        c.drop_with_will()
        self.loop.call_later(self.options.offline_s, self._come_back, c, version)

    def _come_back(self, c: _Client, version: int) -> None:
        c.device.serve(version)  # the update finished while it was away
        c.device.restarts += 1
        try:
            c.client.reconnect()
        except OSError as exc:
            log.warning("%s could not reconnect: %s", c.device.device_id, exc)

    def go_offline(self, device_id: str, seconds: float) -> None:
        """Take one device off the broker for a while (its Last Will fires), then bring it back."""
        c = next(c for c in self._clients if c.device.device_id == device_id)
        c.drop_with_will()
        self.loop.call_later(seconds, self._reconnect, c)

    def _reconnect(self, c: _Client) -> None:
        try:
            c.client.reconnect()
        except OSError as exc:
            log.warning("%s could not reconnect: %s", c.device.device_id, exc)


class ThreadedSimulation:
    """A Simulation on its own event-loop thread, for synchronous callers; a context manager."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-sim", daemon=True)
        self.sim: Simulation | None = None

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Simulation:
        """Start the loop thread and connect every device; returns the Simulation (call into it with call())."""
        self._thread.start()

        async def make() -> Simulation:
            sim = Simulation(self.options)
            await sim.start()
            return sim

        self.sim = self.run(make())
        return self.sim

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run fn on the loop thread (device state is only touched there) and return its result."""

        async def go() -> T:
            return fn()

        return self.run(go(), timeout)

    def stop(self) -> None:
        """Disconnect every device and end the loop thread."""
        if self.sim is not None:
            self.run(self.sim.stop(), 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
