"""MqttLink against a real mosquitto: status/LWT, retained state, queued delivery, subscriptions, auth, TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config import MqttConfig, TlsConfig
from edge.errors import LinkError, OutboxError
from edge.link.base import encode_json
from edge.link.mqtt import SENDER, MqttLink
from edge.link.outbox import Outbox, OutboxMessage
from edge.supervise import Health
from shared.payloads import Envelope, ModelInfo, StatePayload
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.fixtures.broker import Broker, MqttProbe

REPO = Path(__file__).resolve().parents[2]
Probe = Callable[..., MqttProbe]


def mqtt_cfg(broker: Broker, tmp_path: Path, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "outbox_path": tmp_path / "outbox.sqlite",
        "keepalive_s": 5,
        "reconnect_min_s": 1,
        "reconnect_max_s": 1,
        "flush_timeout_s": 3,
    }
    return MqttConfig(**{**base, **kw})


def wait_until(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def topics() -> DeviceTopics:
    return DeviceTopics("lab", "cam-1")


@pytest.fixture
def links() -> Iterator[list[MqttLink]]:
    """Links a test creates; stopped at teardown even when the test fails."""
    made: list[MqttLink] = []
    yield made
    for link in made:
        link.stop(timeout_s=0)


def start_link(links: list[MqttLink], cfg: MqttConfig, topics: DeviceTopics) -> MqttLink:
    link = MqttLink(cfg, topics)
    links.append(link)
    link.start()
    return link


def state_payload(seq: int = 0) -> StatePayload:
    return StatePayload(
        device_id="cam-1", boot_id="b1", seq=seq, ts=1, agent_version="0.1.0",
        model=ModelInfo(name="digits", version=3, variant="model.int8.onnx"),
        hardware={"cpu": "x86_64"}, config_digest="abc",
    )


def test_status_is_retained_online_then_stopped_on_clean_stop(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path), topics)
    wait_until(lambda: link.counters.published >= 1, what="status acknowledged")
    late = mqtt_probe(mosquitto, topics.status)  # subscribes after the fact: sees the retained value
    msg = late.wait_for(lambda m: m.topic == topics.status)
    assert (msg.text, msg.retain) == ("online", True)

    link.stop()
    later = mqtt_probe(mosquitto, topics.status)
    msg = later.wait_for(lambda m: m.topic == topics.status)
    assert (msg.text, msg.retain) == ("stopped", True)
    assert not link.connected
    # a clean stop must not fire the Last Will
    time.sleep(0.3)
    assert [m.text for m in late.on(topics.status)] == ["online", "stopped"]


def test_last_will_marks_a_killed_agent_offline(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics
) -> None:
    probe = mqtt_probe(mosquitto, topics.status)
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from edge.config import MqttConfig
        from edge.link.mqtt import MqttLink
        from shared.topics import DeviceTopics
        link = MqttLink(MqttConfig(host="{mosquitto.host}", port={mosquitto.port}, keepalive_s=5,
                                   outbox_path=Path(r"{tmp_path / 'child.sqlite'}")), DeviceTopics("lab", "cam-1"))
        link.start()
        while not link.connected:
            time.sleep(0.02)
        print("up", flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        probe.wait_for(lambda m: m.text == "online", what="online status")
        child.kill()  # SIGKILL: no DISCONNECT, the broker must publish the will
        msg = probe.wait_for(lambda m: m.text == "offline", timeout=15, what="Last Will 'offline'")
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout:
            child.stdout.close()
    assert msg.topic == topics.status
    retained = mqtt_probe(mosquitto, topics.status).wait_for(lambda m: m.topic == topics.status)
    assert (retained.text, retained.retain) == ("offline", True)


def test_state_is_retained_and_republished_when_the_broker_forgot_it(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    link = MqttLink(mqtt_cfg(mosquitto, tmp_path), topics)
    links.append(link)
    link.publish_json(topics.state, state_payload(), retain=True)  # set before connecting: sent on connect
    link.start()
    wait_until(lambda: link.counters.published >= 2, what="status and state acknowledged")
    msg = mqtt_probe(mosquitto, topics.state).wait_for(lambda m: m.topic == topics.state)
    assert msg.retain and msg.json()["model"]["version"] == 3 and msg.json()["replayed"] is False

    link.publish_json(topics.state, state_payload(seq=9), retain=True)  # latest value wins
    wait_until(lambda: link.in_flight() == 0, what="state acknowledged")
    acked = link.counters.published
    mosquitto.stop()  # persistence off: the broker forgets every retained message
    mosquitto.start()
    wait_until(lambda: link.counters.published >= acked + 2, what="status and state republished")
    fresh = mqtt_probe(mosquitto, topics.state, topics.status)
    state = fresh.wait_for(lambda m: m.topic == topics.state)
    assert state.retain and state.json()["seq"] == 9
    assert fresh.wait_for(lambda m: m.topic == topics.status).text == "online"


def test_stream_messages_are_delivered_in_order_and_leave_the_outbox(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    probe = mqtt_probe(mosquitto, topics.telemetry)
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)
    wait_until(lambda: link.connected, what="link connected")
    for seq in range(200):
        link.publish_json(topics.telemetry, Envelope(device_id="cam-1", boot_id="b", seq=seq, ts=seq))
    got = probe.wait_count(topics.telemetry, 200)
    assert [m.json()["seq"] for m in got] == list(range(200))
    assert not any(m.json()["replayed"] for m in got)
    assert not any(m.retain for m in got)
    wait_until(lambda: link.outbox.depth() == 0, what="outbox drained")
    assert link.metrics() == {
        "outbox_depth": 0.0, "outbox_dropped": 0.0, "outbox_write_errors": 0.0, "outbox_snapshots_dropped": 0.0,
        "thread_errors": 0.0,
    }
    assert link.counters.enqueued == 200


def test_a_batch_is_queued_in_one_transaction_and_delivered_in_order_after_single_messages(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    probe = mqtt_probe(mosquitto, topics.events)
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)
    wait_until(lambda: link.connected, what="link connected")
    link.publish_json(topics.events, Envelope(device_id="cam-1", boot_id="b", seq=0, ts=0))
    begins: list[int] = []  # transactions opened by this thread (the sender opens its own to delete acked rows)
    me = threading.get_ident()
    link.outbox._db.set_trace_callback(
        lambda sql: begins.append(1) if sql.startswith("BEGIN") and threading.get_ident() == me else None
    )
    link.publish_json_many(topics.events, [Envelope(device_id="cam-1", boot_id="b", seq=i, ts=i) for i in range(1, 50)])
    assert len(begins) == 1, "one outbox transaction for the whole batch"
    got = probe.wait_count(topics.events, 50)
    assert [m.json()["seq"] for m in got] == list(range(50)) and not any(m.json()["replayed"] for m in got)
    wait_until(lambda: link.outbox.depth() == 0, what="outbox drained")
    assert link.counters.enqueued == 50
    with pytest.raises(LinkError, match="cannot publish to topic"):
        link.publish_json_many("bad/#", [{"seq": 1}])


def test_delivered_rows_are_deleted_in_groups_not_one_transaction_per_puback(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    probe = mqtt_probe(mosquitto, topics.events)
    link = start_link(links, mqtt_cfg(mosquitto, tmp_path, max_inflight=5), topics)
    wait_until(lambda: link.connected, what="link connected")
    deletes: list[int] = []
    me = threading.get_ident()
    link.outbox._db.set_trace_callback(
        lambda sql: deletes.append(1) if sql.startswith("BEGIN") and threading.get_ident() != me else None
    )
    link.publish_json_many(topics.events, [Envelope(device_id="cam-1", boot_id="b", seq=i, ts=i) for i in range(200)])
    assert [m.json()["seq"] for m in probe.wait_count(topics.events, 200)] == list(range(200))
    wait_until(lambda: link.outbox.depth() == 0, what="every delivered row deleted")
    # One per PUBACK window (five) would be about 40-80; in groups of up to 32 it is a handful.
    assert 1 <= len(deletes) <= 30, f"{len(deletes)} delete transactions for 200 PUBACKs"


def test_start_never_waits_for_a_missing_broker_and_stop_keeps_the_queue(
    mosquitto: Broker, tmp_path: Path, topics: DeviceTopics
) -> None:
    mosquitto.stop()
    link = MqttLink(mqtt_cfg(mosquitto, tmp_path, reconnect_min_s=5, reconnect_max_s=30), topics)
    link.start()
    link.publish_json(topics.telemetry, {"seq": 0, "fps": 1.5})
    link.publish_text(topics.events, "plain")
    assert not link.connected
    link.stop()
    with Outbox(tmp_path / "outbox.sqlite") as box:
        rows = box.peek(10)
    assert [r.topic for r in rows] == [topics.telemetry, topics.events]
    assert json.loads(rows[0].payload) == {"seq": 0, "fps": 1.5, "replayed": True}


def publish_until_handled(sender: MqttProbe, topic: str, got: list[tuple[str, bytes]], timeout: float = 10) -> None:
    """Send ready-pings until the link's handler sees one: the subscription is live without guessing a delay."""
    deadline = time.monotonic() + timeout
    got.clear()
    while not any(p == b"ready" for _, p in got):
        if time.monotonic() > deadline:
            raise AssertionError(f"no message on {topic} reached the handler within {timeout}s")
        sender.publish(topic, b"ready")
        time.sleep(0.1)


def test_subscriptions_survive_a_broker_restart_and_a_failing_handler_does_not_break_the_link(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    got: list[tuple[str, bytes]] = []

    def handler(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        got.append((topic, payload))

    link = MqttLink(mqtt_cfg(mosquitto, tmp_path), topics)
    links.append(link)
    link.subscribe(topics.cmd_filter, handler)
    link.start()
    sender = mqtt_probe(mosquitto)
    publish_until_handled(sender, topics.cmd("ping"), got)
    sender.publish(topics.cmd("ping"), b"boom")
    sender.publish(topics.cmd("ping"), b"one")
    wait_until(lambda: b"one" in [p for _, p in got], what="message after the failing one handled")

    mosquitto.stop()  # persistence off: the broker forgets the link's subscription
    mosquitto.start()
    sender.wait_subscribed()
    publish_until_handled(sender, topics.cmd("ping"), got)
    sender.publish(topics.cmd("ping"), b"two")
    wait_until(lambda: b"two" in [p for _, p in got], what="message after restart handled")
    assert [(t, p) for t, p in got if p != b"ready"] == [(topics.cmd("ping"), b"two")]
    assert link.connected


def test_username_and_password_are_sent_and_a_refusal_is_logged(
    mosquitto_factory: Callable[..., Broker],
    mqtt_probe: Probe,
    tmp_path: Path,
    topics: DeviceTopics,
    links: list[MqttLink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "cam-1", "s3cret"], check=True, capture_output=True)
    broker = mosquitto_factory(allow_anonymous=False, extra_conf=f"password_file {pw}")
    good = start_link(links, mqtt_cfg(broker, tmp_path, username="cam-1", password="s3cret"), topics)
    wait_until(lambda: good.connected, what="authenticated link connected")

    other = DeviceTopics("lab", "cam-2")
    bad = start_link(
        links, mqtt_cfg(broker, tmp_path / "bad", username="cam-1", password="wrong"), other
    )
    with caplog.at_level("ERROR", logger="edge.link.mqtt"):
        wait_until(lambda: "refused the connection" in caplog.text, what="refusal logged")
    assert not bad.connected
    assert "mqtt.username/password" in caplog.text


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    now = dt.datetime.now(dt.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return path

    def cert(subject: str, k: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: Any, ca: bool,
             san: list[x509.GeneralName] | None = None) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                                              key_cert_sign=True, crl_sign=True, encipher_only=False,
                                              decipher_only=False), critical=True)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key, cli_key = key(), key(), key()
    ca = cert("test-ca", ca_key, None, ca_key, True)
    srv = cert("broker", srv_key, ca.subject, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli = cert("cam-1", cli_key, ca.subject, ca_key, False)
    out = {}
    for label, c, k in (("ca", ca, ca_key), ("server", srv, srv_key), ("client", cli, cli_key)):
        out[f"{label}_cert"] = d / f"{label}.pem"
        out[f"{label}_cert"].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        out[f"{label}_key"] = write_key(k, d / f"{label}.key")
    return out


def test_mutual_tls_connects_with_the_configured_ca_and_client_certificate(
    mosquitto_factory: Callable[..., Broker], tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    c = make_certs(tmp_path)
    broker = mosquitto_factory(extra_conf="\n".join([
        f"cafile {c['ca_cert']}", f"certfile {c['server_cert']}", f"keyfile {c['server_key']}",
        "require_certificate true",
    ]))
    tls = TlsConfig(ca_file=c["ca_cert"], cert_file=c["client_cert"], key_file=c["client_key"])
    link = start_link(links, mqtt_cfg(broker, tmp_path, tls=tls), topics)
    wait_until(lambda: link.connected, what="TLS link connected")

    # The certificate names 127.0.0.1, not "localhost": only `insecure` (skip hostname check) lets that through.
    by_name = {"host": "localhost", "tls": tls.model_copy(update={"insecure": True})}
    insecure = start_link(links, mqtt_cfg(broker, tmp_path / "insecure", **by_name), DeviceTopics("lab", "y"))
    wait_until(lambda: insecure.connected, what="insecure TLS link connected by another name")

    strict_cfg = mqtt_cfg(broker, tmp_path / "strict", host="localhost", tls=tls)
    strict = start_link(links, strict_cfg, DeviceTopics("lab", "z"))
    no_client_cert = start_link(
        links, mqtt_cfg(broker, tmp_path / "nocert", tls=TlsConfig(ca_file=c["ca_cert"])), DeviceTopics("lab", "x")
    )
    time.sleep(1.5)
    assert not no_client_cert.connected
    assert not strict.connected


def test_missing_tls_files_fail_early_with_the_file_named(tmp_path: Path, topics: DeviceTopics) -> None:
    cfg = MqttConfig(outbox_path=tmp_path / "o.sqlite", tls=TlsConfig(ca_file=tmp_path / "nope.pem"))
    with pytest.raises(LinkError, match=r"nope\.pem"):
        MqttLink(cfg, topics)


def test_broker_refusing_a_message_drops_it_and_the_queue_moves_on(
    mosquitto_factory: Callable[..., Broker], mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics,
    links: list[MqttLink],
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic write {topics.status}\ntopic write {topics.telemetry}\ntopic read #\n")
    broker = mosquitto_factory(extra_conf=f"acl_file {acl}")
    probe = mqtt_probe(broker, topics.telemetry)
    link = start_link(links, mqtt_cfg(broker, tmp_path), topics)
    wait_until(lambda: link.connected, what="link connected")
    link.publish_json(topics.events, {"seq": 0})  # not allowed by the ACL
    link.publish_json(topics.telemetry, {"seq": 1})
    assert probe.wait_for(lambda m: m.topic == topics.telemetry).json()["seq"] == 1
    wait_until(lambda: link.outbox.depth() == 0, what="outbox drained")
    assert link.counters.rejected == 1


def test_encode_json_marks_only_enveloped_payloads_as_replayed() -> None:
    env = Envelope(device_id="d", boot_id="b", seq=1, ts=2)
    assert json.loads(encode_json(env, replayed=True))["replayed"] is True
    assert json.loads(encode_json(env))["replayed"] is False
    assert json.loads(encode_json({"seq": 1}, replayed=True)) == {"seq": 1, "replayed": True}
    assert json.loads(encode_json({"x": 1}, replayed=True)) == {"x": 1}
    with pytest.raises(LinkError, match="JSON"):
        encode_json({"seq": 1, "fps": float("nan")})


def test_fake_link_records_like_the_real_one() -> None:
    fake = FakeLink(connected=False)
    fake.publish_json("a/b", Envelope(device_id="d", boot_id="b", seq=0, ts=0))
    fake.publish_text("a/status", "online", retain=True)
    seen: list[bytes] = []
    fake.subscribe("a/cmd/+", lambda t, p: seen.append(p))
    assert fake.deliver("a/cmd/ping", b"{}") == 1
    assert fake.deliver("a/other", b"{}") == 0
    assert fake.on("a/b")[0].json()["replayed"] is True
    assert fake.on("a/status")[0].retain
    assert seen == [b"{}"]
    with pytest.raises(LinkError, match="topic"):
        fake.publish_text("a/+", "x")


def test_the_window_respects_the_brokers_receive_maximum(
    mosquitto_factory: Callable[..., Broker], mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics,
    links: list[MqttLink],
) -> None:
    broker = mosquitto_factory(extra_conf="max_inflight_messages 3")  # announced as Receive Maximum 3
    probe = mqtt_probe(broker, topics.telemetry)
    link = start_link(links, mqtt_cfg(broker, tmp_path, max_inflight=50), topics)
    wait_until(lambda: link.connected, what="link connected")
    for seq in range(300):
        link.publish_json(topics.telemetry, {"seq": seq, "pad": "x" * 500})
    got = probe.wait_count(topics.telemetry, 300)
    assert [m.json()["seq"] for m in got] == list(range(300))
    assert link.window == 3


class FlakyOutbox(Outbox):
    """An outbox whose reading and deleting each fail once, as a disk hiccup would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.peek_faults = 1
        self.ack_faults = 1

    def peek(self, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
        if self.peek_faults and self.depth() >= 10:
            self.peek_faults -= 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return super().peek(limit, after_id)

    def ack_many(self, message_ids: Iterable[int]) -> None:
        ids = list(message_ids)
        if self.ack_faults and ids:
            self.ack_faults -= 1
            raise OutboxError("cannot remove delivered messages (injected)")
        super().ack_many(ids)


def test_the_sender_survives_a_failed_read_and_a_failed_delete_and_delivers_everything_once(
    mosquitto: Broker, mqtt_probe: Probe, tmp_path: Path, topics: DeviceTopics, links: list[MqttLink]
) -> None:
    probe = mqtt_probe(mosquitto, topics.telemetry)
    box = FlakyOutbox(tmp_path / "flaky.sqlite")
    health = Health()
    link = MqttLink(mqtt_cfg(mosquitto, tmp_path), topics, box, health=health)
    links.append(link)
    for seq in range(10):  # queued before connecting: the first read after start fails
        link.publish_json(topics.telemetry, {"seq": seq})
    link.start()
    wait_until(lambda: box.peek_faults == 0, what="the injected read failure")
    for seq in range(10, 50):
        link.publish_json(topics.telemetry, {"seq": seq})
    got = probe.wait_count(topics.telemetry, 50)
    wait_until(lambda: box.depth() == 0, what="outbox drained after the failed delete")
    time.sleep(0.3)
    assert [m.json()["seq"] for m in probe.on(topics.telemetry)] == list(range(50))  # in order, none twice
    assert len(got) == 50 and box.ack_faults == 0
    assert health.errors(SENDER) == 2 and health.degraded() == {}
    assert "thread_errors" not in link.metrics()  # a shared Health is reported by its owner
    link.stop()
    box.close()
