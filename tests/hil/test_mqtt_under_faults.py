"""The real telemetry path (MqttLink + durable outbox) in its own network namespace loses nothing and keeps order
through a cut link, reset and stalled connections behind a jittery proxy, and a slow shaped link."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hil.fault_proxy import FaultProxy
from hil.netns import NetnsHarness
from hil.plan import Clear, Delay, DropConnections, FaultPlan, LinkDown, RateLimit, Stall
from hil.runner import FaultRunner
from shared.topics import DeviceTopics
from tests.fixtures.broker import Broker, MqttProbe
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
TOPICS = DeviceTopics("lab", "hil-1")
COUNT, RATE = 200, 20.0


def broker_on_veth(make: Callable[..., Broker], ns: NetnsHarness) -> tuple[Broker, int]:
    """A broker with a listener on the host end of the veth (for the namespace) besides its loopback one (for the
    subscriber, which must not depend on the link under test)."""
    port = free_port()
    return make(extra_conf=f"listener {port} {ns.host_ip}"), port


class Producer:
    """hil.producer running inside the namespace (from the checkout, installed or not)."""

    def __init__(self, ns: NetnsHarness, tmp: Path, host: str, port: int, *extra: str) -> None:
        self.log_path = tmp / "producer.log"
        self._log = self.log_path.open("w")
        cmd = [
            sys.executable, "-m", "hil.producer", "--host", host, "--port", str(port), "--count", str(COUNT),
            "--rate", str(RATE), "--outbox", str(tmp / "outbox.sqlite"), "--device", TOPICS.device_id, *extra,
        ]
        self.proc = ns.spawn_in(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT)

    def summary(self, timeout: float = 150) -> dict[str, Any]:
        """Wait for the producer to exit and return its JSON summary; fail with its log if it did not drain."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        self._log.close()
        log_tail = self.log_path.read_text(errors="replace")[-4000:]
        assert self.proc.returncode == 0, f"producer exited {self.proc.returncode}: {out}\n{log_tail}"
        return dict(json.loads(out.strip().splitlines()[-1]))


def in_order_without_loss(probe: MqttProbe, timeout: float = 60) -> list[int]:
    """First arrival of each seq, in arrival order (QoS 1 may redeliver what was in flight at a fault), once all
    COUNT arrived or the timeout passed."""
    deadline = time.monotonic() + timeout
    while True:
        bodies = [m.json() for m in probe.on(TOPICS.telemetry)]
        seqs = list(dict.fromkeys(b["seq"] for b in bodies))
        if len(seqs) >= COUNT or time.monotonic() > deadline:
            assert len({b["boot_id"] for b in bodies}) == 1, "the producer restarted: seq numbering is not one run"
            return seqs
        time.sleep(0.2)


def wait_flowing(probe: MqttProbe) -> None:
    """Faults start once telemetry demonstrably flows end to end."""
    probe.wait_count(TOPICS.telemetry, 20, timeout=30)


@pytest.mark.slow
def test_a_15_s_link_cut_mid_run_loses_nothing_and_keeps_order(
    netns: NetnsHarness, mosquitto_factory: Callable[..., Broker], mqtt_probe: Callable[..., MqttProbe],
    tmp_path: Path,
) -> None:
    broker, veth_port = broker_on_veth(mosquitto_factory, netns)
    probe = mqtt_probe(broker, TOPICS.telemetry, client_id="dashboard", persistent=True)
    producer = Producer(netns, tmp_path, netns.host_ip, veth_port)
    wait_flowing(probe)
    # Longer than keepalive (5 s) plus the unanswered ping (5 s): the link must notice, reconnect and replay.
    plan = FaultPlan(name="cut", steps=[LinkDown(at_s=0, duration_s=15)])
    with FaultRunner(plan, link=netns) as runner:
        applied = runner.wait()
        summary = producer.summary()
    assert [(a.kind, a.undo) for a in applied] == [("link_down", False), ("link_down", True)]
    assert summary["disconnects"] >= 1 and summary["connects"] >= 2, summary
    assert summary["max_depth"] > 100, f"production during the cut should have queued up: {summary}"
    assert in_order_without_loss(probe) == list(range(COUNT))
    assert summary["dropped"] == 0 and summary["rejected"] == 0


def test_resets_and_a_stall_behind_a_jittery_proxy_lose_nothing_and_keep_order(
    netns: NetnsHarness, mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe],
    fault_proxy: Callable[..., FaultProxy], tmp_path: Path,
) -> None:
    # The namespace reaches the broker on host loopback only through the proxy on the veth's host end.
    proxy = fault_proxy(mosquitto.host, mosquitto.port, listen_host=netns.host_ip, seed=11)
    probe = mqtt_probe(mosquitto, TOPICS.telemetry, client_id="dashboard", persistent=True)
    producer = Producer(netns, tmp_path, netns.host_ip, proxy.port)
    wait_flowing(probe)
    plan = FaultPlan(
        name="flaky-path",
        steps=[
            Delay(at_s=0, ms=40, jitter_ms=30),
            DropConnections(at_s=1.5),
            Stall(at_s=4, duration_s=3),
            DropConnections(at_s=8),
            Clear(at_s=9),
        ],
    )
    with FaultRunner(plan, proxy=proxy) as runner:
        runner.wait()
        summary = producer.summary()
    seqs = in_order_without_loss(probe)
    c = proxy.counters()
    assert c.dropped >= 1 and c.accepted >= 2, c  # a connection was reset and the link came back through the proxy
    assert summary["disconnects"] >= 1, summary
    assert seqs == list(range(COUNT))


def test_a_slow_shaped_link_still_delivers_everything_in_order(
    netns: NetnsHarness, mosquitto_factory: Callable[..., Broker], mqtt_probe: Callable[..., MqttProbe],
    tmp_path: Path,
) -> None:
    broker, veth_port = broker_on_veth(mosquitto_factory, netns)
    probe = mqtt_probe(broker, TOPICS.telemetry, client_id="dashboard", persistent=True)
    # ~260 bytes a message on the wire at 20/s need ~40 kbit/s: at 24 kbit/s the queue must build up, then drain.
    producer = Producer(netns, tmp_path, netns.host_ip, veth_port, "--metrics", "3")
    wait_flowing(probe)
    plan = FaultPlan(name="slow", steps=[RateLimit(at_s=0, rate_kbit=24, burst_bytes=3200, latency_ms=1000)])
    with FaultRunner(plan, link=netns) as runner:
        runner.wait()
        summary = producer.summary()
        assert netns.overlimits() > 0, "the shaper never held a packet back: the link was not actually limited"
    assert in_order_without_loss(probe, timeout=90) == list(range(COUNT))
    assert summary["max_depth"] > 40, f"the link kept up with production, so it was not slow: {summary}"
    assert summary["dropped"] == 0 and summary["rejected"] == 0
