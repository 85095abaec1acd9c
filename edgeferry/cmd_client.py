"""Operators' command client: sign a command, publish it to one device over MQTT 5 and wait for its reply.

The issuer sequence lives next to the private key (`KEY.seq`, replaced atomically under a lock) and never falls
below the clock in milliseconds, so it grows across invocations, and a lost file or a second machine with the same
key still issues numbers above what devices accepted before.
"""

from __future__ import annotations

import fcntl
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgeferry.errors import CommandClientError, NoReplyError
from shared.command_signing import MAX_SEQ, Target, build_body, next_sequence, sign_command
from shared.object_store import atomic_write
from shared.payloads import parse_command
from shared.signing import load_private_key
from shared.tls import TlsFilesError, client_context
from shared.topics import DeviceTopics

_NO_MATCHING_SUBSCRIBERS = 16


@dataclass(frozen=True)
class BrokerOptions:
    """How to reach the broker as an operator."""

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class IssuerSequence:
    """The next sequence number of one key, persisted in a file beside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CommandClientError(f"cannot lock the sequence file {lock}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandClientError(f"cannot read the sequence file {self.path}: {exc}") from exc
        if not text.isdigit() or not 0 < int(text) <= MAX_SEQ:
            raise CommandClientError(
                f"sequence file {self.path} does not hold a sequence number; remove it (the next number then "
                "comes from the clock)"
            )
        return int(text)

    def take(self, now_ms: int) -> int:
        """Reserve and persist the next number before it is used, so no two commands share one."""
        with self._locked():
            seq = next_sequence(self._read(), now_ms)
            try:
                atomic_write(self.path, f"{seq}\n".encode())
            except OSError as exc:
                raise CommandClientError(f"cannot write the sequence file {self.path}: {exc.strerror}") from exc
            return seq


def sequence_path(key_path: Path) -> Path:
    """Where the sequence of a key lives: KEY.seq beside the private key."""
    return key_path.with_name(key_path.name + ".seq")


def tls_context(opts: BrokerOptions) -> ssl.SSLContext | None:
    """A client TLS context when a CA or client certificate is given."""
    if opts.tls_ca is None and opts.tls_cert is None:
        return None
    try:
        return client_context(opts.tls_ca, opts.tls_cert, opts.tls_key, what="broker TLS")
    except TlsFilesError as exc:
        raise CommandClientError(str(exc)) from exc


class _Session:
    """One short MQTT 5 session: connect, subscribe to the reply, publish, wait for the matching reply."""

    def __init__(self, opts: BrokerOptions, timeout_s: float) -> None:
        self.opts = opts
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._connected: ReasonCode | None = None
        self._subscribed: list[ReasonCode] | None = None
        self._published: ReasonCode | None = None
        self._reply_topic = ""
        self._rid = ""
        self.reply: dict[str, Any] | None = None
        self.status: str | None = None
        self._status_topic = ""
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"edgeferry-cmd-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if opts.username:
            self.client.username_pw_set(opts.username, opts.password)
        ctx = tls_context(opts)
        if ctx is not None:
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._connected = reason
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      props: Any) -> None:
        with self._cond:
            self._subscribed = list(reasons)
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._published = reason
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._status_topic:
            with self._cond:
                self.status = bytes(msg.payload).decode(errors="replace")[:40]
            return
        try:
            doc = json.loads(msg.payload)
        except (ValueError, RecursionError):
            return
        if msg.topic == self._reply_topic and isinstance(doc, dict) and doc.get("id") == self._rid:
            with self._cond:
                self.reply = doc
                self._cond.notify_all()

    def _wait(self, what: str, done: Any) -> None:
        with self._cond:
            while not done():
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise NoReplyError(what)
                self._cond.wait(left)

    def run(self, topics: DeviceTopics, name: str, rid: str, payload: bytes) -> dict[str, Any]:
        where = f"{self.opts.host}:{self.opts.port}"
        self._reply_topic, self._rid, self._status_topic = topics.reply(name), rid, topics.status
        try:
            self.client.connect(self.opts.host, self.opts.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise CommandClientError(f"cannot connect to the broker at {where}: {exc}") from exc
        self.client.loop_start()
        try:
            self._wait(f"the broker at {where} did not accept the connection within {self.timeout_s:g} s",
                       lambda: self._connected is not None)
            assert self._connected is not None
            if self._connected.is_failure:
                raise CommandClientError(f"the broker at {where} refused the connection: {self._connected}")
            self.client.subscribe([(self._reply_topic, SubscribeOptions(qos=1)),
                                   (self._status_topic, SubscribeOptions(qos=1))])
            self._wait(f"the broker at {where} did not confirm the subscription within {self.timeout_s:g} s",
                       lambda: self._subscribed is not None)
            assert self._subscribed is not None
            if self._subscribed[0].is_failure:
                raise CommandClientError(
                    f"the broker refused the subscription to {self._reply_topic}: {self._subscribed[0]} "
                    "(check the broker's ACL for this user)"
                )
            self.client.publish(topics.cmd(name), payload, qos=1)
            self._wait(f"the broker at {where} did not acknowledge the command within {self.timeout_s:g} s",
                       lambda: self._published is not None)
            assert self._published is not None
            if self._published.is_failure:
                raise CommandClientError(
                    f"the broker refused the command on {topics.cmd(name)}: {self._published} "
                    "(check the broker's ACL for this user)"
                )
            if self._published.value == _NO_MATCHING_SUBSCRIBERS:
                raise NoReplyError(
                    f"nobody is subscribed to {topics.cmd(name)}: is {topics.device_id} running, in fleet "
                    f"{topics.fleet}, and connected to this broker?"
                )
            status = f" (its last status: {self.status})" if self.status else ""
            self._wait(f"no reply from {topics.fleet}/{topics.device_id} to {name} within {self.timeout_s:g} s"
                       f"{status}", lambda: self.reply is not None)
            assert self.reply is not None
            return self.reply
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def send_command(
    device: str,
    name: str,
    args: Mapping[str, Any],
    *,
    key_path: Path,
    fleet: str = "default",
    broker: BrokerOptions | None = None,
    expires_in_s: float = 60,
    timeout_s: float = 10,
    key: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    """Sign cmd/<name> for one device, send it and return its reply (NoReplyError, CommandClientError)."""
    if not timeout_s > 0:
        raise CommandClientError(f"--timeout must be above 0 s, got {timeout_s}")
    topics = DeviceTopics(fleet, device)
    private = key or load_private_key(key_path)
    rid = uuid.uuid4().hex[:12]
    now_ms = int(time.time() * 1000)
    # Built once before the sequence is taken, so a bad command never consumes a number.
    target = Target(fleet=topics.fleet, device=topics.device_id)
    parse_command(name, build_body(name, target, request_id=rid, seq=1, now_ms=now_ms, expires_in_s=expires_in_s,
                                   args=args).command_payload())
    seq = IssuerSequence(sequence_path(key_path)).take(now_ms)
    body = build_body(name, target, request_id=rid, seq=seq, now_ms=now_ms, expires_in_s=expires_in_s, args=args)
    return _Session(broker or BrokerOptions(), timeout_s).run(topics, name, rid, sign_command(body, private))
