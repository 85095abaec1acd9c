"""Commands: every command gets exactly one reply with its id; only signed, addressed, fresh ones run; bad ones are
answered and counted, never crash the worker."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.command_auth import CommandAuth, SequenceState
from edge.commands import CommandRouter
from edge.config import MqttConfig
from edge.errors import PackageRejected
from edge.link.lanes import LaneBudget
from edge.link.mqtt import MqttLink
from edge.supervise import Health
from edge.telemetry import EnvelopeFactory
from shared.command_signing import Target, build_body, sign_command
from shared.errors import CommandError
from shared.payloads import MAX_COMMAND_BYTES, parse_command
from shared.signing import key_id
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.fixtures.broker import Broker, MqttProbe

TOPICS = DeviceTopics("lab", "cam-3")
KEY = Ed25519PrivateKey.generate()
_SEQ = itertools.count(1)


def signed(name: str, rid: str = "r", key: Ed25519PrivateKey = KEY, seq: int | None = None,
           target: Target | None = None, expires_in_s: float = 60, age_s: float = 0, **args: Any) -> bytes:
    """A command as `edgeferry cmd` sends it (age_s seconds ago), for this module's device."""
    body = build_body(name, target or Target(fleet="lab", device="cam-3"), request_id=rid,
                      seq=next(_SEQ) if seq is None else seq, now_ms=int((time.time() - age_s) * 1000),
                      expires_in_s=expires_in_s, args=args)
    return sign_command(body, key)


def make_auth(tmp_path: Path, allow_unsigned: bool = False) -> CommandAuth:
    return CommandAuth(fleet="lab", device_id="cam-3", trusted={key_id(KEY.public_key()): KEY.public_key()},
                       state=SequenceState(tmp_path / "cmd-seq.json"), allow_unsigned=allow_unsigned)


def ping(cmd: Any) -> dict[str, Any]:
    return {"model": "digits", "version": 4}


def fake_router(tmp_path: Path, **kw: Any) -> tuple[CommandRouter, FakeLink]:
    link = kw.pop("link", None) or FakeLink()
    auth = kw.pop("auth", None) or make_auth(tmp_path)
    router = CommandRouter(link, TOPICS, EnvelopeFactory("cam-3"), auth=auth, **kw)
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
    router = CommandRouter(link, TOPICS, EnvelopeFactory("cam-3"), auth=make_auth(tmp_path))
    router.register("ping", ping)

    def deploy(cmd: Any) -> dict[str, Any]:
        if cmd.version == 13:
            raise PackageRejected("version 13: signature does not verify with any trusted key")
        if cmd.version == 66:
            raise KeyError("bug")
        return {"version": cmd.version, "pinned": cmd.pin, "allow_downgrade": cmd.allow_downgrade}

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
        probe.publish(TOPICS.cmd("ping"), signed("ping", WARMUP))
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
    reply = ask(probe, "ping", signed("ping", "req-42"))
    assert reply["id"] == "req-42" and reply["ok"] is True and reply["error"] is None
    assert reply["command"] == "ping" and reply["result"] == {"model": "digits", "version": 4}
    assert reply["device_id"] == "cam-3" and isinstance(reply["seq"], int)
    reply = ask(probe, "deploy", signed("deploy", "d1", version=7, pin=True, allow_downgrade=True))
    assert (reply["ok"], reply["result"]) == (True, {"version": 7, "pinned": True, "allow_downgrade": True})
    assert router.errors == errors


def test_failures_and_bad_commands_get_error_replies_and_are_counted(
    router_on_broker: tuple[CommandRouter, MqttProbe],
) -> None:
    router, probe = router_on_broker
    errors, refused = router.errors, router.metrics()["cmd_refused"]
    cases = [
        ("deploy", signed("deploy", "d13", version=13), "d13", "signature does not verify"),
        ("deploy", signed("deploy", "d66", version=66), "d66", "internal error: KeyError"),
        ("deploy", signed("deploy", "d0", version=0), "d0", "version"),
        ("ping", b"not json", None, "not JSON"),
        ("ping", b'["a list"]', None, "JSON object"),
        ("ping", signed("ping", "x", extra=1), "x", "extra"),
        ("reboot", b'{"id": "r1"}', "r1", "unknown command 'reboot'"),
        ("rollback", signed("rollback", "rb"), "rb", "not supported by this agent"),
        ("ping", b'{"id": "big", "pad": "' + b"x" * 3 * MAX_COMMAND_BYTES + b'"}', "big", "over the"),
        ("ping", b"[" * 10_000, None, "nested too deeply"),
    ]
    for name, payload, rid, error in cases:
        reply = ask(probe, name, payload)
        assert reply["ok"] is False, (name, payload[:40])
        assert reply["id"] == rid
        assert error in reply["error"], (error, reply["error"])
    assert router.errors == errors + len(cases)
    assert router.metrics()["cmd_refused"] == refused  # none of these is about who sent it


def test_unsigned_forged_stale_and_misaddressed_commands_are_refused_with_a_reason(
    router_on_broker: tuple[CommandRouter, MqttProbe],
) -> None:
    router, probe = router_on_broker
    stranger = Ed25519PrivateKey.generate()
    tampered = json.loads(signed("deploy", "t1", version=3))
    tampered["signed"] = tampered["signed"].replace('"version":3', '"version":1')
    replayed = signed("ping", "p1")
    assert ask(probe, "ping", replayed)["ok"] is True
    cases = [
        (b'{"id": "u1"}', "u1", "unsigned", "unsigned command refused"),
        (json.dumps(tampered).encode(), "t1", "bad_signature", "does not match"),
        (signed("ping", "k1", key=stranger), "k1", "unknown_key", "not in this device's device.command_keys"),
        (replayed, "p1", "replayed", "not above the last accepted"),
        (signed("ping", "o1", target=Target(fleet="lab", device="cam-4")), "o1", "not_addressed", "cam-4"),
    ]
    before = router.metrics()
    for payload, rid, _reason, error in cases:
        name = "deploy" if rid == "t1" else "ping"
        reply = ask(probe, name, payload)
        assert (reply["ok"], reply["id"]) == (False, rid), reply
        assert error in reply["error"], (error, reply["error"])
    after = router.metrics()
    for _, _, reason, _ in cases:
        assert after[f"cmd_refused_{reason}"] == before[f"cmd_refused_{reason}"] + 1, reason
    assert after["cmd_refused"] == before["cmd_refused"] + len(cases)
    assert after["cmd_errors"] == before["cmd_errors"] + len(cases)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_objects = st.fixed_dictionaries(
    {}, optional={"id": st.text(max_size=70), "version": _json_values, "values": _json_values, "pin": _json_values}
)


def _signed_or_raw(name: str, obj: dict[str, Any], sign: bool) -> tuple[bytes, bytes | None]:
    """(payload to send, the plain command it carries when it is signed)."""
    if sign:
        try:
            body = build_body(name, Target(fleet="lab", device="cam-3"), request_id=obj.get("id") or "",
                              seq=next(_SEQ), now_ms=int(time.time() * 1000), expires_in_s=60,
                              args={k: v for k, v in obj.items() if k != "id"})
            return sign_command(body, KEY), body.command_payload()
        except CommandError:
            pass
    return json.dumps(obj).encode(), None


def test_random_payloads_each_get_exactly_one_reply(router_on_broker: tuple[CommandRouter, MqttProbe]) -> None:
    router, probe = router_on_broker
    payloads = st.one_of(
        st.binary(max_size=200).map(lambda b: ("raw", b)),
        _json_values.map(lambda v: ("raw", json.dumps(v).encode())),
        st.tuples(_objects, st.booleans()).map(lambda t: ("obj", t)),
    )
    replies_before, asked = len(probe.messages), 0

    @settings(max_examples=60, deadline=None, database=None)
    @given(name=st.sampled_from(["ping", "deploy", "set-config", "rollback", "reboot"]), item=payloads)
    def check(name: str, item: tuple[str, Any]) -> None:
        nonlocal asked
        asked += 1
        kind, value = item
        inner: bytes | None = None
        if kind == "obj":
            payload, inner = _signed_or_raw(name, value[0], value[1])
        else:
            payload = value
        errors = router.errors
        reply = ask(probe, name, payload)
        valid = False
        if inner is not None and name in ("ping", "deploy", "set-config"):
            try:
                parse_command(name, inner)
                valid = True
            except CommandError:
                pass
        assert reply["ok"] is valid, (name, payload, reply)
        if not valid:
            assert reply["error"]
            assert router.errors == errors + 1

    check()
    probe.publish(TOPICS.cmd("ping"), signed("ping", "last"))
    probe.wait_for(lambda m: m.json()["id"] == "last", what="reply to the last ping")
    # one reply per command, nothing more (replies are queued in order, so none can still be on the way)
    assert len(probe.messages) - replies_before == asked + 1


def test_slow_handlers_run_off_the_network_thread_and_a_full_queue_answers_busy(tmp_path: Path) -> None:
    router, link = fake_router(tmp_path, queue_size=1)
    started, release = threading.Event(), threading.Event()
    caller: list[str] = []

    def deploy(cmd: Any) -> dict[str, Any]:
        caller.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return {"version": cmd.version}

    router.register("deploy", deploy)
    router.start()
    first, second, busy = (signed("deploy", rid, version=v) for rid, v in (("a", 1), ("b", 2), ("c", 3)))
    try:
        link.deliver(TOPICS.cmd("deploy"), first)
        assert started.wait(10)
        link.deliver(TOPICS.cmd("deploy"), second)  # waits in the queue
        link.deliver(TOPICS.cmd("deploy"), busy)  # queue full
        assert [(r["id"], r["ok"]) for r in replies(link, "deploy")] == [("c", False)]
        assert "busy" in replies(link, "deploy")[0]["error"]
        release.set()
        wait_until(lambda: len(replies(link, "deploy")) == 3, what="all three answered")
        # a command answered 'busy' never ran, so the same signed message may be retried
        link.deliver(TOPICS.cmd("deploy"), busy)
        wait_until(lambda: len(replies(link, "deploy")) == 4, what="the retry answered")
    finally:
        release.set()
        router.stop()
    assert [(r["id"], r["ok"]) for r in replies(link, "deploy")] == [("c", False), ("a", True), ("b", True),
                                                                    ("c", True)]
    assert caller == ["commands"] * 3
    assert router.metrics()["cmd_errors"] == 1.0 and router.metrics()["cmd_refused"] == 0


def test_two_copies_of_one_command_run_once(tmp_path: Path) -> None:
    router, link = fake_router(tmp_path)
    started, release, ran = threading.Event(), threading.Event(), []

    def deploy(cmd: Any) -> dict[str, Any]:
        ran.append(cmd.id)
        started.set()
        release.wait(10)
        return {}

    router.register("deploy", deploy)
    router.start()
    blocker, copy = signed("deploy", "first", version=1), signed("deploy", "once", version=2)
    try:
        link.deliver(TOPICS.cmd("deploy"), blocker)
        assert started.wait(10)
        link.deliver(TOPICS.cmd("deploy"), copy)
        link.deliver(TOPICS.cmd("deploy"), copy)  # admitted too: neither copy has been recorded yet
        release.set()
        wait_until(lambda: len(replies(link, "deploy")) == 3, what="all answered")
        link.deliver(TOPICS.cmd("deploy"), copy)  # and once recorded, refused at once
        wait_until(lambda: len(replies(link, "deploy")) == 4, what="the late copy answered")
    finally:
        release.set()
        router.stop()
    assert ran == ["first", "once"]
    got = [(r["id"], r["ok"], "replayed" in (r["error"] or "")) for r in replies(link, "deploy")]
    assert got == [("first", True, False), ("once", True, False), ("once", False, True), ("once", False, True)]
    assert router.metrics()["cmd_refused_replayed"] == 2


def test_the_sequence_is_persisted_after_the_checks_and_before_the_handler(tmp_path: Path) -> None:
    router, link = fake_router(tmp_path)
    seen_on_disk: list[Any] = []

    def look(cmd: Any) -> dict[str, Any]:
        seen_on_disk.append(json.loads((tmp_path / "cmd-seq.json").read_text()))
        return {}

    router.register("ping", look)
    router.start()
    try:
        link.deliver(TOPICS.cmd("ping"), signed("ping", "stale", seq=500, age_s=600))
        # refused ones never touch the state: not even the expired one from a trusted key
        link.deliver(TOPICS.cmd("ping"), signed("ping", "lost", seq=501, key=Ed25519PrivateKey.generate()))
        link.deliver(TOPICS.cmd("ping"), signed("ping", "far", seq=502, target=Target(fleet="yard")))
        assert not (tmp_path / "cmd-seq.json").exists()
        link.deliver(TOPICS.cmd("ping"), signed("ping", "ok", seq=503))
        wait_until(lambda: len(replies(link, "ping")) == 3 + 1, what="four replies")
    finally:
        router.stop()
    assert seen_on_disk == [{"version": 1, "last": {key_id(KEY.public_key()): 503}}]


def test_a_crash_outside_the_handler_does_not_end_the_worker(tmp_path: Path) -> None:
    class FlakyLink(FakeLink):
        fail = True

        def publish_json(self, topic: str, payload: Any, retain: bool = False, *,
                         budget: LaneBudget | None = None) -> None:
            if FlakyLink.fail:
                FlakyLink.fail = False
                raise RuntimeError("socket buffer gone")
            super().publish_json(topic, payload, retain)

    health = Health()
    router, link = fake_router(tmp_path, link=FlakyLink(), health=health)
    router.register("ping", ping)
    router.start()
    try:
        link.deliver(TOPICS.cmd("ping"), signed("ping", "lost"))
        wait_until(lambda: health.errors("commands") == 1, what="the crash counted")
        link.deliver(TOPICS.cmd("ping"), signed("ping", "next"))
        wait_until(lambda: bool(replies(link, "ping")), what="a reply after the crash")
    finally:
        router.stop()
    assert [r["id"] for r in replies(link, "ping")] == ["next"]
    assert health.metrics() == {"thread_errors": 1.0}


def test_unsigned_commands_run_only_in_development_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    router, link = fake_router(tmp_path, auth=make_auth(tmp_path, allow_unsigned=True))
    router.register("ping", ping)
    with caplog.at_level("WARNING", logger="edge.commands"):
        router.start()
    try:
        assert "accepting UNSIGNED commands (development)" in caplog.text
        link.deliver(TOPICS.cmd("ping"), b'{"id": "dev"}')
        link.deliver(TOPICS.cmd("ping"), signed("ping", "forged", key=Ed25519PrivateKey.generate()))
        wait_until(lambda: len(replies(link, "ping")) == 2, what="two replies")
    finally:
        router.stop()
    got = {r["id"]: r["ok"] for r in replies(link, "ping")}
    assert got == {"dev": True, "forged": False}  # a signature that is there is still checked


def test_commands_are_subscribed_without_retained_messages_and_only_known_names_register(tmp_path: Path) -> None:
    router, link = fake_router(tmp_path)
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


def test_a_result_that_cannot_be_sent_is_an_error_reply(tmp_path: Path) -> None:
    router, link = fake_router(tmp_path)
    router.register("ping", lambda cmd: {"when": object()})
    router.start()
    try:
        link.deliver(TOPICS.cmd("ping"), signed("ping", "p"))
        wait_until(lambda: bool(replies(link, "ping")), what="reply")
    finally:
        router.stop()
    reply = replies(link, "ping")[0]
    assert (reply["id"], reply["ok"]) == ("p", False)
    assert reply["error"].startswith("internal error")


# A 15-byte command whose id is a lone surrogate: valid JSON, but no UTF-8 text can carry it back in a reply.
LONE_SURROGATE = b'{"id":"\\ud800"}'


def test_ids_that_are_not_utf8_text_get_an_error_reply_and_the_log_stays_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(LONE_SURROGATE) == 15
    forged_key_id = json.dumps({"signed": '{"id":"\\ud800"}', "key_id": "\ud800\n", "sig": "AA=="}).encode()
    router, link = fake_router(tmp_path, clock=lambda: 1000.0)
    router.register("ping", ping)
    router.start()
    try:
        with caplog.at_level("DEBUG"):
            for i in range(500):
                router.on_message(TOPICS.cmd("ping"), LONE_SURROGATE if i % 2 else forged_key_id)
    finally:
        router.stop()
    got = replies(link, "ping")
    assert len(got) == 500
    assert all(r["id"] is None and r["ok"] is False and r["error"] for r in got)
    assert all(r["error"].isascii() or "\ud800" not in r["error"] for r in got)
    lines = [r for r in caplog.records if r.name.startswith("edge.")]
    assert len(lines) <= 4, [r.getMessage() for r in lines]
    assert not any(r.exc_info for r in caplog.records)
    assert sum(len(r.getMessage()) for r in lines) < 2000
    assert all("\n" not in r.getMessage() and "\ud800" not in r.getMessage() for r in lines)
    assert router.metrics()["cmd_errors"] == 500


def test_a_development_device_answers_a_non_text_id_without_running_the_command(tmp_path: Path) -> None:
    ran: list[Any] = []
    router, link = fake_router(tmp_path, auth=make_auth(tmp_path, allow_unsigned=True))

    def record(cmd: Any) -> dict[str, Any]:
        ran.append(cmd)
        return {}

    router.register("ping", record)
    router.start()
    try:
        router.on_message(TOPICS.cmd("ping"), LONE_SURROGATE)
        router.on_message(TOPICS.cmd("ping"), b'{"id": "fine"}')
        wait_until(lambda: len(replies(link, "ping")) == 2, what="two replies")
    finally:
        router.stop()
    first, second = replies(link, "ping")
    assert (first["id"], first["ok"]) == (None, False) and "UTF-8" in first["error"]
    assert (second["id"], second["ok"]) == ("fine", True)
    assert len(ran) == 1


def test_refusals_are_logged_once_per_window_then_summarised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    router, link = fake_router(tmp_path, clock=lambda: now[0])
    router.register("ping", ping)
    router.start()
    try:
        with caplog.at_level("INFO", logger="edge"):
            for _ in range(30):
                router.on_message(TOPICS.cmd("ping"), b'{"id": "u"}')
            router.on_message(TOPICS.cmd("ping"), signed("ping", "x", key=Ed25519PrivateKey.generate()))
            first = [r.getMessage() for r in caplog.records]
            now[0] += 61
            router.on_message(TOPICS.cmd("ping"), b'{"id": "u"}')
    finally:
        router.stop()
    assert len(first) == 2, first  # one line per reason while the window lasts
    assert "unsigned command refused" in first[0] and "not in this device's" in first[1]
    later = [r.getMessage() for r in caplog.records][2:]
    assert any("29 more" in m and "unsigned" in m and "last 60 s" in m for m in later), later
    assert any("unsigned command refused" in m for m in later), later  # a new window logs its first one again
    assert len(replies(link, "ping")) == 32
