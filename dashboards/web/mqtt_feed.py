"""The web app's one MQTT client: reads every device's `events` and `telemetry` into buffers and publishes alerts.

Alerts go to edgeferry/<fleet>/alerts/<rule>/<device>: retained JSON with state "firing" while one fires; when it
ends, a "resolved" message and then an empty retained message that clears it, so a tool that connects later sees
only what fires now.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from dashboards.web.alerts import Alert, alert_message, alert_topic
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from shared.topics import fleet_filter

log = logging.getLogger(__name__)


class MqttFeed:
    """Subscribes to events, publishes alerts; reconnects by itself (paho's loop thread)."""

    def __init__(self, fleet: str, host: str, port: int, buffer: EventBuffer, figures: FigureBuffer,
                 username: str | None = None,
                 password: str | None = None, client_id: str | None = None, keepalive: int = 30) -> None:
        self.fleet = fleet
        self.buffer = buffer
        self.figures = figures
        self._host, self._port, self._keepalive = host, port, keepalive
        self._filters = [fleet_filter(fleet, "events"), fleet_filter(fleet, "telemetry")]
        self._connected = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"edgeferry-web-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self, wait_s: float = 10.0) -> None:
        """Connect (in the background; the broker may come later) and wait up to wait_s for the first connect."""
        self.client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self.client.loop_start()
        if not self._connected.wait(wait_s):
            log.warning("web app: MQTT broker %s:%s not reachable yet; alerts and events wait for it",
                        self._host, self._port)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("web app: MQTT connect refused: %s", reason)
            return
        client.subscribe([(f, 0) for f in self._filters])
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4:
            return
        if parts[3] == "telemetry":
            self.figures.add_payload(parts[2], bytes(msg.payload))
        elif parts[3] == "events":
            self.buffer.add_payload(parts[2], bytes(msg.payload))

    def publish_alerts(self, started: list[Alert], ended: list[Alert]) -> None:
        """Announce alerts that started and ended (QoS 1; paho queues them while the broker is away)."""
        now = int(time.time() * 1000)
        for a in started:
            self.client.publish(alert_topic(self.fleet, a), alert_message(a, "firing", now), qos=1, retain=True)
        for a in ended:
            topic = alert_topic(self.fleet, a)
            self.client.publish(topic, alert_message(a, "resolved", now), qos=1, retain=False)
            self.client.publish(topic, b"", qos=1, retain=True)
