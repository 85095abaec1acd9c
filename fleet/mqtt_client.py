"""The control plane's one MQTT client (paho, MQTT 5): subscriptions restored on every reconnect, QoS 1 publishes
that wait for the broker's acknowledgement, and shared subscriptions so several workers split the load."""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet.config import BrokerConfig
from fleet.errors import BrokerError, PublishRefusedError
from shared.tls import TlsFilesError, client_context

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, bool], None]


def shared(group: str, topic_filter: str) -> str:
    """The MQTT 5 shared-subscription form of a filter: the broker gives each message to one group member."""
    return f"$share/{group}/{topic_filter}"


def _tls(cfg: BrokerConfig) -> ssl.SSLContext | None:
    if cfg.tls_ca is None and cfg.tls_cert is None and cfg.tls_key is None:
        return None
    try:
        return client_context(cfg.tls_ca, cfg.tls_cert, cfg.tls_key, what="broker TLS (broker.tls_*)")
    except TlsFilesError as exc:
        raise BrokerError(str(exc)) from exc


class FleetMqtt:
    """One connection to the broker; `on_message(topic, payload, retained)` runs on paho's network thread."""

    def __init__(self, cfg: BrokerConfig, client_id: str | None = None, on_message: OnMessage | None = None,
                 filters: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.client_id = client_id or f"edgeferry-fleet-{uuid.uuid4().hex[:10]}"
        self.filters = list(filters)
        self._on_message = on_message
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        # PUBACK reason codes of failed QoS 1 publishes by message id (paho reports them to on_publish only).
        self._puback_failures: dict[int, tuple[int, str]] = {}
        self._puback_lock = threading.Lock()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=MQTTProtocolVersion.MQTTv5)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        ctx = _tls(cfg)
        if ctx is not None:
            c.tls_set_context(ctx)
        c.reconnect_delay_set(1, 30)
        c.max_inflight_messages_set(100)
        c.on_connect = self._connected_cb
        c.on_disconnect = self._disconnected_cb
        c.on_subscribe = self._subscribed_cb
        c.on_message = self._message_cb
        c.on_publish = self._published_cb
        self._client = c

    @property
    def where(self) -> str:
        """host:port for messages."""
        return f"{self.cfg.host}:{self.cfg.port}"

    def connect(self) -> None:
        """Connect and subscribe, waiting up to broker.connect_timeout_s; BrokerError in one line otherwise."""
        try:
            self._client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach the MQTT broker at {self.where}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(self.cfg.connect_timeout_s):
            self.close()
            why = self._refused or f"no answer within {self.cfg.connect_timeout_s:g} s"
            raise BrokerError(f"MQTT broker at {self.where} did not accept the connection: {why}")
        if self.filters and not self._subscribed.wait(self.cfg.connect_timeout_s):
            self.close()
            raise BrokerError(f"MQTT broker at {self.where} did not confirm the subscriptions {self.filters}")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1 publish that returns once the broker acknowledged it."""
        if not self._connected.is_set():
            raise BrokerError(f"not connected to the MQTT broker at {self.where}; nothing was sent to {topic}")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout=self.cfg.connect_timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise BrokerError(f"MQTT broker at {self.where} did not acknowledge the message to {topic}")
        with self._puback_lock:
            failed = self._puback_failures.pop(info.mid, None)
        if failed is not None:
            code, why = failed
            raise PublishRefusedError(f"MQTT broker at {self.where} refused the message to {topic} as "
                                      f"{self.cfg.username or 'an anonymous client'}: {why} ({code})", topic, code)

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._connected.clear()  # first, so the disconnect callback knows it was asked for
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._connected.is_set()

    def _connected_cb(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            return
        self._connected.set()
        if self.filters:
            self._subscribed.clear()
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
        log.info("connected to the MQTT broker at %s as %s", self.where, self.client_id)

    def _disconnected_cb(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected.is_set():
            log.warning("lost the MQTT broker at %s (%s); reconnecting", self.where, reason)
        self._connected.clear()

    def _subscribed_cb(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("broker at %s refused subscriptions: %s", self.where, ", ".join(failed))
        self._subscribed.set()

    def _published_cb(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        # Runs before paho marks the message published, so publish() finds the code once its wait ends.
        if reason is not None and reason.is_failure:
            with self._puback_lock:
                self._puback_failures[mid] = (int(reason.value), str(reason))

    def _message_cb(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
