"""Store-and-forward end to end with a real broker: outages, agent restarts and a full queue lose nothing they
should keep, and keep order."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import MqttConfig
from edge.link.mqtt import SENDER, MqttLink
from edge.telemetry import EnvelopeFactory
from shared.metrics import METRICS
from shared.payloads import TelemetryPayload
from shared.topics import DeviceTopics
from tests.edge.small_fs import small_tmpfs
from tests.fixtures.broker import Broker, MqttProbe, Received

REPO = Path(__file__).resolve().parents[2]
Probe = Callable[..., MqttProbe]
# Every declared figure: a realistic telemetry-sized payload (~1.5 KB).
# Every declared figure at a value its declared type and range accept (whole numbers for counts).
FIGURES = {m.name: min(m.bounds[1], 12.0 if m.number_type == "int" else 12.345) for m in METRICS}


@pytest.fixture
def topics() -> DeviceTopics:
    return DeviceTopics("lab", "cam-9")


def cfg_for(broker: Broker, path: Path, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "host": broker.host, "port": broker.port, "outbox_path": path, "keepalive_s": 5,
        "reconnect_min_s": 1, "reconnect_max_s": 2, "flush_timeout_s": 5,
    }
    return MqttConfig(**{**base, **kw})


@pytest.fixture
def links() -> Iterator[list[MqttLink]]:
    made: list[MqttLink] = []
    yield made
    for link in made:
        link.stop(timeout_s=0)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def first_arrivals(msgs: list[Received]) -> list[dict[str, Any]]:
    """QoS 1 is at-least-once: a message in flight when the broker died may arrive twice. Keep first arrivals."""
    seen: set[int] = set()
    out = []
    for m in msgs:
        body = m.json()
        if body["seq"] not in seen:
            seen.add(body["seq"])
            out.append(body)
    return out


class Producer:
    """Sends telemetry at a fixed rate from its own thread, as the agent's telemetry loop would."""

    def __init__(self, link: MqttLink, topic: str, rate_hz: float) -> None:
        self.link = link
        self.topic = topic
        self.period = 1 / rate_hz
        self.envelopes = EnvelopeFactory("cam-9")
        self.produced: list[tuple[int, float]] = []  # (seq, monotonic time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            env = self.envelopes.next()
            self.link.publish_json(self.topic, TelemetryPayload.build(env, FIGURES))
            self.produced.append((env.seq, time.monotonic()))
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.slow
def test_a_30_s_broker_outage_at_20_msgs_per_s_loses_nothing_and_keeps_order(
    mosquitto_factory: Callable[..., Broker], mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics,
    links: list[MqttLink],
) -> None:
    # The subscriber must not lose messages itself. With broker persistence its session (subscription and
    # queue) survives the restart, so whether it or the agent reconnects first, messages wait for it.
    broker = mosquitto_factory(persistence=True)
    probe = mqtt_probe(broker, topics.telemetry, client_id="dashboard", persistent=True)
    link = MqttLink(cfg_for(broker, tmp_path / "outbox.sqlite"), topics)
    links.append(link)
    link.start()
    wait_until(lambda: link.connected, 10, "link connected")

    producer = Producer(link, topics.telemetry, rate_hz=20)
    producer.start()
    time.sleep(3)
    t_down = time.monotonic()
    broker.stop()
    time.sleep(30)
    t_up = time.monotonic()
    broker.start()
    probe.wait_subscribed(timeout=15)
    time.sleep(3)
    producer.stop()

    produced = [seq for seq, _ in producer.produced]
    assert produced == list(range(len(produced))) and len(produced) > 20 * 33
    probe.wait_for(lambda m: m.json()["seq"] == produced[-1], timeout=60, what="the last message")
    got = first_arrivals(probe.on(topics.telemetry))

    # zero loss, in order: seq contiguous and increasing at the subscriber
    assert [b["seq"] for b in got] == produced
    when = dict(producer.produced)
    outage = [b for b in got if t_down + 1 < when[b["seq"]] < t_up]
    before = [b for b in got if when[b["seq"]] < t_down]
    assert len(outage) >= 20 * 28
    assert all(b["replayed"] for b in outage), "messages produced during the outage must say replayed"
    assert before and not any(b["replayed"] for b in before)
    wait_until(lambda: link.outbox.depth() == 0, 10, "outbox drained")
    assert link.metrics()["outbox_dropped"] == 0


def test_the_queue_outlives_the_link_object_and_the_next_run_delivers_the_rest(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    path = tmp_path / "outbox.sqlite"
    probe = mqtt_probe(mosquitto, topics.telemetry)
    envelopes = EnvelopeFactory("cam-9")
    first = MqttLink(cfg_for(mosquitto, path), topics)
    links.append(first)
    first.start()
    wait_until(lambda: first.connected, 10, "first link connected")
    for _ in range(30):
        first.publish_json(topics.telemetry, TelemetryPayload.build(envelopes.next(), FIGURES))
    probe.wait_count(topics.telemetry, 30)

    mosquitto.stop()
    wait_until(lambda: not first.connected, 10, "first link sees the outage")
    for _ in range(70):
        first.publish_json(topics.telemetry, TelemetryPayload.build(envelopes.next(), FIGURES))
    first.stop()  # the agent exits while the broker is away: 70 messages stay on disk

    mosquitto.start()
    probe.wait_subscribed()
    second = MqttLink(cfg_for(mosquitto, path), topics)
    links.append(second)
    assert second.outbox.depth() == 70
    second.start()
    wait_until(lambda: len(probe.on(topics.telemetry)) >= 100, 20, "all 100 messages delivered")
    got = first_arrivals(probe.on(topics.telemetry))
    assert [b["seq"] for b in got] == list(range(100))
    assert [b["replayed"] for b in got] == [False] * 30 + [True] * 70
    wait_until(lambda: second.outbox.depth() == 0, 10, "outbox drained")


def test_a_full_queue_drops_the_oldest_and_counts_them(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    link = MqttLink(cfg_for(mosquitto, tmp_path / "outbox.sqlite", outbox_max_messages=10), topics)
    links.append(link)
    envelopes = EnvelopeFactory("cam-9")
    for _ in range(25):  # produced before the link ever connects
        link.publish_json(topics.telemetry, TelemetryPayload.build(envelopes.next(), FIGURES))
    assert link.metrics() == {
        "outbox_depth": 10.0, "outbox_dropped": 15.0, "outbox_write_errors": 0.0, "outbox_snapshots_dropped": 0.0,
        "thread_errors": 0.0
    }

    probe = mqtt_probe(mosquitto, topics.telemetry)
    link.start()
    got = probe.wait_count(topics.telemetry, 10)
    assert [b["seq"] for b in first_arrivals(got)] == list(range(15, 25))
    wait_until(lambda: link.outbox.depth() == 0, 10, "outbox drained")
    assert link.metrics() == {
        "outbox_depth": 0.0, "outbox_dropped": 15.0, "outbox_write_errors": 0.0, "outbox_snapshots_dropped": 0.0,
        "thread_errors": 0.0
    }


def test_a_full_disk_during_an_outage_counts_every_loss_and_delivery_resumes_without_a_restart(
    mosquitto_factory: Callable[..., Broker], mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics,
    links: list[MqttLink],
) -> None:
    broker = mosquitto_factory(persistence=True)
    probe = mqtt_probe(broker, topics.telemetry, client_id="dashboard", persistent=True)
    envelopes = EnvelopeFactory("cam-9")
    produced: list[int] = []

    def send(n: int) -> None:
        for _ in range(n):
            env = envelopes.next()
            link.publish_json(topics.telemetry, TelemetryPayload.build(env, FIGURES))
            produced.append(env.seq)

    with small_tmpfs(tmp_path / "small", 8192) as fs:
        link = MqttLink(cfg_for(broker, fs.path / "outbox.sqlite"), topics)
        links.append(link)
        link.start()
        wait_until(lambda: link.connected, 10, "link connected")
        send(10)
        probe.wait_count(topics.telemetry, 10)

        broker.stop()
        wait_until(lambda: not link.connected, 10, "link sees the outage")
        send(20)  # room on disk: queued
        fs.fill()
        send(100)  # no room: lost, and each loss counted
        lost_offline = link.metrics()["outbox_write_errors"]
        assert lost_offline > 0

        broker.start()  # disk still full: the queue is delivered, deleting what was delivered fails and is retried
        probe.wait_subscribed(timeout=15)
        wait_until(lambda: link.health.errors(SENDER) >= 1, 15, "a refused delete reported")
        send(20)
        fs.free()
        send(20)
        m = link.metrics()
        lost = int(m["outbox_write_errors"])
        expected = len(produced) - lost
        wait_until(lambda: len({b["seq"] for b in first_arrivals(probe.on(topics.telemetry))}) >= expected, 30,
                   "every message that was written delivered")
        got = [b["seq"] for b in first_arrivals(probe.on(topics.telemetry))]
        assert len(got) == expected and got == sorted(got) and set(got) <= set(produced)
        assert len(produced) == 170 and m["outbox_dropped"] == 0
        wait_until(lambda: link.outbox.depth() == 0, 15, "delivered messages removed once space was back")
        assert link.health.degraded() == {} and link.connected

        fs.fill()  # a clean stop on a full disk still says "stopped" and returns normally
        link.stop()
    status = mqtt_probe(broker, topics.status).wait_for(lambda m: m.topic == topics.status)
    assert (status.text, status.retain) == ("stopped", True)


CHILD = """
import sys, time
from pathlib import Path
from edge.config import MqttConfig
from edge.link.mqtt import MqttLink
from shared.topics import DeviceTopics
link = MqttLink(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), outbox_path=Path(sys.argv[2])),
                DeviceTopics("lab", "cam-9"))
link.start()
for seq in range(50):
    link.publish_json(DeviceTopics("lab", "cam-9").telemetry, {"seq": seq})
print("queued", flush=True)
time.sleep(120)
"""


def test_the_queue_survives_a_kill_9_and_the_next_run_delivers_it_in_order(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    path = tmp_path / "outbox.sqlite"
    mosquitto.stop()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(mosquitto.port), str(path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "queued"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        if child.stdout:
            child.stdout.close()
    mosquitto.start()
    probe = mqtt_probe(mosquitto, topics.telemetry)
    link = MqttLink(cfg_for(mosquitto, path), topics)
    links.append(link)
    assert link.outbox.depth() == 50
    link.start()
    got = probe.wait_count(topics.telemetry, 50)
    assert [m.json()["seq"] for m in got] == list(range(50))
    assert all(m.json()["replayed"] for m in got)
