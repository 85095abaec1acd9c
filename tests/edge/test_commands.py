"""Commands: every command gets exactly one reply with its id; bad ones are answered and counted, never crash."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.commands import CommandRouter
from edge.config import MqttConfig
from edge.errors import PackageRejected
from edge.link.mqtt import MqttLink
from edge.telemetry import EnvelopeFactory
from shared.payloads import MAX_COMMAND_BYTES, CommandError, parse_command
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.fixtures.broker import Broker, MqttProbe

TOPICS = DeviceTopics("lab", "cam-3")


def ping(cmd: Any) -> dict[str, Any]:
    return {"model": "digits", "version": 4}


def fake_router(**kw: Any) -> tuple[CommandRouter, FakeLink]:
    link = FakeLink()
    router = CommandRouter(link, TOPICS, EnvelopeFactory("cam-3"), **kw)
    return router, link


def replies(link: FakeLink, name: str) -> list[dict[str, Any]]:
    return [p.json() for p in link.on(TOPICS.reply(name))]


def wait_until(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def router_on_broker(
    mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe], tmp_path: Path
) -> Iterator[tuple[CommandRouter, MqttProbe]]:
    """A router on a real MqttLink, and a probe that sends commands and watches replies."""
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, outbox_path=tmp_path / "o.sqlite", keepalive_s=5,
                     reconnect_min_s=1, reconnect_max_s=1, flush_timeout_s=2)
    link = MqttLink(cfg, TOPICS)
    router = CommandRouter(link, TOPICS, EnvelopeFactory("cam-3"))
    router.register("ping", ping)

    def deploy(cmd: Any) -> dict[str, Any]:
        if cmd.version == 13:
            raise PackageRejected("version 13: signature does not verify with any trusted key")
        if cmd.version == 66:
            raise KeyError("bug")
        return {"version": cmd.version, "pinned": cmd.pin}

    router.register("deploy", deploy)
    router.register("set-config", lambda cmd: {"applied": sorted(cmd.values)})
    router.start()
    link.start()
    probe = mqtt_probe(mosquitto, f"{TOPICS.base}/cmd/+/reply")
    # The router's subscription is live once a ping gets answered. Warm-up pings sent before that are lost, and
    # answered ones may still arrive later, so ask() skips replies with the warm-up id.
    deadline = time.monotonic() + 10
    while not probe.on(TOPICS.reply("ping")):
        assert time.monotonic() < deadline, "router never answered a ping"
        probe.publish(TOPICS.cmd("ping"), f'{{"id": "{WARMUP}"}}'.encode())
        time.sleep(0.1)
    yield router, probe
    router.stop()
    link.stop(timeout_s=0)


WARMUP = "warmup"


def ask(probe: MqttProbe, name: str, payload: bytes) -> dict[str, Any]:
    """Send one command and return its reply (the next one on the reply topic)."""
    topic = TOPICS.reply(name)
    seen = len(probe.on(topic))
    probe.publish(TOPICS.cmd(name), payload)
    while True:
        reply = probe.wait_count(topic, seen + 1)[seen].json()
        if reply.get("id") != WARMUP:
            return reply
        seen += 1


def test_round_trip_echoes_the_request_id_with_the_result(router_on_broker: tuple[CommandRouter, MqttProbe]) -> None:
    router, probe = router_on_broker
    errors = router.errors
    reply = ask(probe, "ping", b'{"id": "req-42"}')
    assert reply["id"] == "req-42" and reply["ok"] is True and reply["error"] is None
    assert reply["command"] == "ping" and reply["result"] == {"model": "digits", "version": 4}
    assert reply["device_id"] == "cam-3" and isinstance(reply["seq"], int)
    reply = ask(probe, "deploy", b'{"id": "d1", "version": 7, "pin": true}')
    assert (reply["ok"], reply["result"]) == (True, {"version": 7, "pinned": True})
    assert router.errors == errors


def test_failures_and_bad_commands_get_error_replies_and_are_counted(
    router_on_broker: tuple[CommandRouter, MqttProbe],
) -> None:
    router, probe = router_on_broker
    errors = router.errors
    cases = [
        ("deploy", b'{"id": "d13", "version": 13}', "d13", "signature does not verify"),
        ("deploy", b'{"id": "d66", "version": 66}', "d66", "internal error: KeyError"),
        ("deploy", b'{"id": "d0", "version": 0}', "d0", "version"),
        ("ping", b"not json", None, "not JSON"),
        ("ping", b'["a list"]', None, "JSON object"),
        ("ping", b'{"id": "x", "extra": 1}', "x", "extra"),
        ("reboot", b'{"id": "r1"}', "r1", "unknown command 'reboot'"),
        ("rollback", b'{"id": "rb"}', "rb", "not supported by this agent"),
        ("ping", b'{"id": "big", "pad": "' + b"x" * MAX_COMMAND_BYTES + b'"}', "big", "over the"),
        ("ping", b"[" * 10_000, None, "nested too deeply"),
    ]
    for name, payload, rid, error in cases:
        reply = ask(probe, name, payload)
        assert reply["ok"] is False, (name, payload[:40])
        assert reply["id"] == rid
        assert error in reply["error"], (error, reply["error"])
    assert router.errors == errors + len(cases)


def test_random_payloads_each_get_exactly_one_reply(router_on_broker: tuple[CommandRouter, MqttProbe]) -> None:
    router, probe = router_on_broker
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )
    objects = st.fixed_dictionaries(
        {}, optional={"id": st.text(max_size=70), "version": json_values, "values": json_values, "pin": json_values}
    )
    payloads = st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        objects.map(lambda v: json.dumps(v).encode()),
    )

    replies_before, asked = len(probe.messages), 0

    @settings(max_examples=50, deadline=None, database=None)
    @given(name=st.sampled_from(["ping", "deploy", "set-config", "rollback", "reboot"]), payload=payloads)
    def check(name: str, payload: bytes) -> None:
        nonlocal asked
        asked += 1
        errors = router.errors
        reply = ask(probe, name, payload)
        try:
            parse_command(name, payload)
            valid = name in ("ping", "deploy", "set-config")
        except CommandError:
            valid = False
        assert reply["ok"] is valid, (name, payload, reply)
        if not valid:
            assert reply["error"]
            assert router.errors == errors + 1

    check()
    probe.publish(TOPICS.cmd("ping"), b'{"id": "last"}')
    probe.wait_for(lambda m: m.json()["id"] == "last", what="reply to the last ping")
    # one reply per command, nothing more (replies are queued in order, so none can still be on the way)
    assert len(probe.messages) - replies_before == asked + 1


def test_slow_handlers_run_off_the_network_thread_and_a_full_queue_answers_busy() -> None:
    router, link = fake_router(queue_size=1)
    started, release = threading.Event(), threading.Event()
    caller: list[str] = []

    def deploy(cmd: Any) -> dict[str, Any]:
        caller.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return {"version": cmd.version}

    router.register("deploy", deploy)
    router.start()
    try:
        link.deliver(TOPICS.cmd("deploy"), b'{"id": "a", "version": 1}')
        assert started.wait(10)
        link.deliver(TOPICS.cmd("deploy"), b'{"id": "b", "version": 2}')  # waits in the queue
        link.deliver(TOPICS.cmd("deploy"), b'{"id": "c", "version": 3}')  # queue full
        assert [(r["id"], r["ok"]) for r in replies(link, "deploy")] == [("c", False)]
        assert "busy" in replies(link, "deploy")[0]["error"]
        release.set()
        wait_until(lambda: len(replies(link, "deploy")) == 3, what="all three answered")
    finally:
        release.set()
        router.stop()
    assert [(r["id"], r["ok"]) for r in replies(link, "deploy")] == [("c", False), ("a", True), ("b", True)]
    assert caller == ["commands", "commands"]
    assert router.metrics() == {"cmd_errors": 1.0}


def test_commands_are_subscribed_without_retained_messages_and_only_known_names_register() -> None:
    router, link = fake_router()
    router.start()
    try:
        assert list(link.handlers) == [TOPICS.cmd_filter]
        with pytest.raises(ValueError, match="unknown command"):
            router.register("reboot", ping)
        # replies on cmd/<name>/reply are not commands
        router.on_message(TOPICS.reply("ping"), b"{}")
        assert link.published == []
    finally:
        router.stop()


def test_a_result_that_cannot_be_sent_is_an_error_reply() -> None:
    router, link = fake_router()
    router.register("ping", lambda cmd: {"when": object()})
    router.start()
    try:
        link.deliver(TOPICS.cmd("ping"), b'{"id": "p"}')
        wait_until(lambda: bool(replies(link, "ping")), what="reply")
    finally:
        router.stop()
    reply = replies(link, "ping")[0]
    assert (reply["id"], reply["ok"]) == ("p", False)
    assert reply["error"].startswith("internal error")
