"""In-memory Link for unit tests of code that publishes or subscribes: records everything, no sockets."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import BaseModel

from edge.link.base import MessageHandler, check_topic, encode_json
from edge.link.lanes import LaneBudget
from shared.topics import STATUS_ONLINE, STATUS_STOPPED


@dataclass
class Published:
    """A message FakeLink received."""

    topic: str
    payload: bytes
    retain: bool
    budget: LaneBudget | None = None

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


class FakeLink:
    """Records the bytes MqttLink would send; start/stop record the status MqttLink would announce."""

    def __init__(self, connected: bool = True, status_topic: str | None = None) -> None:
        self.published: list[Published] = []
        self.handlers: dict[str, MessageHandler] = {}
        self.started = False
        self.stopped_with: str | None = None
        self._status_topic = status_topic
        self._connected = connected
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        """Settable with set_connected, to exercise offline behaviour."""
        return self._connected

    def set_connected(self, value: bool) -> None:
        """Pretend the broker went away or came back."""
        self._connected = value

    def start(self) -> None:
        """Mark started; with a status topic, record the retained `online` MqttLink publishes on connect."""
        self.started = True
        if self._status_topic is not None:
            self.publish_text(self._status_topic, STATUS_ONLINE, retain=True)

    def stop(self, status: str = STATUS_STOPPED) -> None:
        """Record the final status (and publish it when a status topic is set)."""
        self.stopped_with = status
        if self._status_topic is not None:
            self.publish_text(self._status_topic, status, retain=True)

    def publish_json(
        self, topic: str, payload: BaseModel | Mapping[str, Any], retain: bool = False, *,
        budget: LaneBudget | None = None,
    ) -> None:
        """Record the bytes MqttLink would send (and the lane budget they would queue under)."""
        data = encode_json(payload, replayed=not retain and not self._connected)
        with self._lock:
            self.published.append(Published(check_topic(topic), data, retain, budget))

    def publish_json_many(self, topic: str, payloads: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Record each message in order, as MqttLink would queue them."""
        for payload in payloads:
            self.publish_json(topic, payload)

    def publish_text(self, topic: str, text: str, retain: bool = False) -> None:
        """Record a text message."""
        with self._lock:
            self.published.append(Published(check_topic(topic), text.encode(), retain))

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, retained: bool = True) -> None:
        """Remember the handler for deliver()."""
        self.handlers[topic_filter] = handler

    def metrics(self) -> dict[str, float]:
        """No queue: nothing to report."""
        return {}

    def deliver(self, topic: str, payload: bytes) -> int:
        """Feed an inbound message to every matching handler, as paho would; returns how many ran."""
        ran = 0
        for topic_filter, handler in list(self.handlers.items()):
            if mqtt.topic_matches_sub(topic_filter, topic):
                handler(topic, payload)
                ran += 1
        return ran

    def on(self, topic: str) -> list[Published]:
        """Messages published to one topic, in order."""
        with self._lock:
            return [p for p in self.published if p.topic == topic]
