"""The web app's one MQTT client: reads every device's `events`, `telemetry` and object topics (a detector's object
events and snapshots) into buffers and publishes alerts.

Alerts go to edgeferry/<fleet>/alerts/<rule>/<device>: retained JSON with state "firing" while one fires; when it
ends, a "resolved" message and then an empty retained message that clears it, so a tool that connects later sees
only what fires now.

Devices are untrusted: a topic's device id passes the ingest's own check (shared.names.check_ident, as
fleet.ingest.route does) or the message is dropped; each payload is validated by the buffers (shared.payloads and the
metric table); any failure costs only that message: counted per device, its reason logged once, and paho's network
thread (which an exception would end, freezing every device's figures) never sees it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from dashboards.errors import Refused
from dashboards.web.alerts import Alert, alert_message, alert_topic
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.objects import ObjectBuffer
from dashboards.web.telemetry_report import parse_telemetry
from shared.names import check_ident
from shared.topics import ROOT, fleet_filter

log = logging.getLogger(__name__)
MAX_LOGGED_REASONS = 1000  # distinct refusal reasons logged; beyond, only counted (a device cannot flood the log)


def device_of(topic: str, fleet: str) -> tuple[str, str] | None:
    """(device id, leaf) of edgeferry/<fleet>/<device>/<leaf>, the id checked as the ingest checks it; else None."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[1] != fleet:
        return None
    try:
        return check_ident(parts[2], "device id"), parts[3]
    except ValueError:
        return None


def object_topic(topic: str, fleet: str) -> tuple[str, str, str | None] | None:
    """(device id, "events" or "snapshots", object id or None) of a detector's object topic; else None."""
    parts = topic.split("/")
    if len(parts) not in (5, 6) or parts[:2] != [ROOT, fleet] or parts[3] != "objects":
        return None
    kind = parts[4]
    if (kind, len(parts)) not in (("events", 5), ("snapshots", 6)):
        return None
    try:
        return check_ident(parts[2], "device id"), kind, parts[5] if len(parts) == 6 else None
    except ValueError:
        return None


class MqttFeed:
    """Subscribes to events, publishes alerts; reconnects by itself (paho's loop thread)."""

    def __init__(self, fleet: str, host: str, port: int, buffer: EventBuffer, figures: FigureBuffer,
                 username: str | None = None,
                 password: str | None = None, client_id: str | None = None, keepalive: int = 30,
                 objects: ObjectBuffer | None = None) -> None:
        self.fleet = fleet
        self.buffer = buffer
        self.figures = figures
        self.objects = objects
        self._host, self._port, self._keepalive = host, port, keepalive
        self._filters = [fleet_filter(fleet, "events"), fleet_filter(fleet, "telemetry")]
        if objects is not None:
            self._filters += [fleet_filter(fleet, "objects/events"), fleet_filter(fleet, "objects/snapshots/+")]
        self._connected = threading.Event()
        self.bad_topics = 0
        self.errors = 0
        self._logged: set[str] = set()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"edgeferry-web-{uuid.uuid4().hex[:8]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self, wait_s: float = 10.0) -> None:
        """Connect (in the background; the broker may come later) and wait up to wait_s until the first connect's
        subscriptions are live, so nothing published after start() returns is missed."""
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

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        # The broker acknowledged the subscriptions: from here on every matching message reaches this feed.
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.take(msg.topic, bytes(msg.payload))
        except Exception as exc:  # noqa: BLE001 - one message must never end paho's thread (every figure would freeze)
            self.errors += 1
            self._once(f"{type(exc).__name__}", f"web app feed: a message on {msg.topic[:120]!r} failed "
                       f"({type(exc).__name__}: {str(exc)[:200]}); the feed goes on")

    def take(self, topic: str, payload: bytes) -> None:
        """One message: into the buffers when its topic and payload are valid, else counted and dropped."""
        found = device_of(topic, self.fleet)
        if found is None and self.objects is not None and (obj := object_topic(topic, self.fleet)) is not None:
            self._take_object(*obj, payload)
            return
        if found is None:
            self.bad_topics += 1
            self._once("topic", f"web app feed: ignoring {topic[:120]!r}: not edgeferry/{self.fleet}/<device id>/<leaf>"
                       " with a valid device id")
            return
        device_id, leaf = found
        try:
            if leaf == "telemetry":
                report = parse_telemetry(payload, device_id)  # once (device checked), for every buffer
                self.figures.add_report(device_id, report)
                if self.objects is not None:
                    self.objects.add_report(device_id, report)
            elif leaf == "events":
                self.buffer.add_payload(device_id, payload)
        except Refused as exc:
            self.figures.count_refused(device_id)
            reason = " ".join(exc.reason.split()[:2])[:80]
            self._once(f"{exc.kind}:{reason}", f"web app feed: {device_id}: {exc} (logged once per reason)")

    def _take_object(self, device_id: str, kind: str, object_id: str | None, payload: bytes) -> None:
        assert self.objects is not None
        try:
            if object_id is None:
                self.objects.add_event(device_id, payload)
            else:
                self.objects.add_snapshot(device_id, object_id, payload)
        except Refused as exc:
            self.figures.count_refused(device_id)
            reason = " ".join(exc.reason.split()[:2])[:80]
            self._once(f"{exc.kind}:{reason}", f"web app feed: {device_id}: {exc} (logged once per reason)")

    @property
    def refused(self) -> dict[str, int]:
        """Device id -> messages refused from it."""
        return self.figures.refused()

    def _once(self, key: str, line: str) -> None:
        if key in self._logged or len(self._logged) >= MAX_LOGGED_REASONS:
            return
        self._logged.add(key)
        log.warning("%s", line)

    def publish_alerts(self, started: list[Alert], ended: list[Alert]) -> None:
        """Announce alerts that started and ended (QoS 1; paho queues them while the broker is away)."""
        now = int(time.time() * 1000)
        for a in started:
            self.client.publish(alert_topic(self.fleet, a), alert_message(a, "firing", now), qos=1, retain=True)
        for a in ended:
            topic = alert_topic(self.fleet, a)
            self.client.publish(topic, alert_message(a, "resolved", now), qos=1, retain=False)
            self.client.publish(topic, b"", qos=1, retain=True)
