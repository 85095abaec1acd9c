"""The producer's direct hand-off on a real mosquitto: an idle link publishes from the producing thread, keeps the
order behind a backlog, and a message whose PUBACK never came stays queued and is delivered after the outage."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from edge.link.mqtt import MqttLink
from shared.payloads import Envelope
from shared.topics import DeviceTopics
from tests.edge.test_mqtt_link import links, mqtt_cfg, start_link, topics, wait_until  # noqa: F401
from tests.fixtures.broker import Broker, MqttProbe

Probe = Callable[..., MqttProbe]


def env(seq: int) -> Envelope:
    return Envelope(device_id="cam-1", boot_id="b", seq=seq, ts=seq)


def test_a_paced_result_on_an_idle_link_is_sent_by_the_producing_thread_and_leaves_the_outbox(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]  # noqa: F811
) -> None:
    probe = mqtt_probe(mosquitto, topics.events)
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)
    wait_until(lambda: link.connected, what="link connected")
    link.publish_json(topics.events, env(0))  # right after CONNACK the sender may still own the session
    probe.wait_count(topics.events, 1)
    before = link.counters.direct
    for seq in range(1, 20):  # paced: each one is delivered before the next is produced
        link.publish_json(topics.events, env(seq))
        probe.wait_count(topics.events, seq + 1)
    link.publish_json_many(topics.events, [env(seq) for seq in range(20, 23)])  # fits the window
    got = probe.wait_count(topics.events, 23)
    assert [m.json()["seq"] for m in got] == list(range(23))
    assert link.counters.direct - before == 22, "every message after the first skipped the sender thread"
    wait_until(lambda: link.outbox.depth() == 0, what="delivered rows deleted")


def test_a_backlog_from_an_outage_goes_first_and_new_messages_keep_the_order(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]  # noqa: F811
) -> None:
    probe = mqtt_probe(mosquitto, topics.events)
    link = MqttLink(mqtt_cfg(mosquitto, tmp_path, max_inflight=2), topics)
    links.append(link)
    for seq in range(100):  # queued before the link is up: the sender owns them
        link.publish_json(topics.events, env(seq))
    link.start()
    wait_until(lambda: link.connected, what="link connected")
    for seq in range(100, 150):  # produced while the backlog drains: none may overtake it
        link.publish_json(topics.events, env(seq))
    got = probe.wait_count(topics.events, 150)
    assert [m.json()["seq"] for m in got] == list(range(150))
    assert link.counters.direct < 50, "messages produced behind a backlog wait for the sender"
    wait_until(lambda: link.outbox.depth() == 0, what="outbox drained")


def test_a_direct_message_without_its_puback_stays_queued_and_arrives_after_the_broker_returns(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]  # noqa: F811
) -> None:
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)
    wait_until(lambda: link.connected, what="link connected")
    link.publish_json(topics.events, env(0))
    wait_until(lambda: link.outbox.depth() == 0, what="message 0 acknowledged and deleted")
    assert mosquitto._proc is not None
    before = link.counters.direct
    os.kill(mosquitto._proc.pid, signal.SIGSTOP)  # frozen: the socket takes the message, no PUBACK comes
    try:
        link.publish_json(topics.events, env(1))
        assert link.counters.direct == before + 1, "message 1 was sent by the producing thread"
        assert [m.topic for m in link.outbox.peek()] == [topics.events], "message 1 waits for its PUBACK"
    finally:
        mosquitto.kill()  # still frozen, it dies before acknowledging: the row must survive, the agent too
    link.stop(timeout_s=0)
    mosquitto.start()
    probe = mqtt_probe(mosquitto, topics.events)
    again = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)  # the next run, same outbox
    got = probe.wait_count(topics.events, 1)
    assert [m.json()["seq"] for m in got] == [1]
    wait_until(lambda: again.outbox.depth() == 0, what="outbox drained")
