"""What the agent needs from its broker link, apart from any MQTT library: the protocol, its error and encoding.

Events, telemetry and commands depend on `Link` only; `edge.link.mqtt` is the real implementation, `edge.link.null`
the one for a device without a broker, and tests use an in-memory fake (tests/edge/fake_link.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from edge.errors import LinkError
from edge.link.lanes import LaneBudget
from shared.topics import STATUS_STOPPED

MessageHandler = Callable[[str, bytes], None]


class Link(Protocol):
    """What code that publishes or subscribes needs from the broker link."""

    @property
    def connected(self) -> bool:
        """Whether a broker session is up right now."""
        ...

    def start(self) -> None:
        """Connect in the background and announce the device online; returns at once even without a broker."""
        ...

    def stop(self, status: str = STATUS_STOPPED) -> None:
        """Flush what can be flushed within a bound, announce `status`, disconnect; never raises on a full disk."""
        ...

    def publish_json(
        self, topic: str, payload: BaseModel | Mapping[str, Any], retain: bool = False, *,
        budget: LaneBudget | None = None,
    ) -> None:
        """Queue a JSON message (retained: latest value, republished on reconnect); never blocks on the broker.

        A budget queues it in that lane of the outbox, whose oldest beyond the budget are dropped and counted."""
        ...

    def publish_json_many(self, topic: str, payloads: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Queue several non-retained JSON messages on one topic, in order, at once (one outbox transaction)."""
        ...

    def publish_text(self, topic: str, text: str, retain: bool = False) -> None:
        """Queue a plain-text message, like publish_json."""
        ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, retained: bool = True) -> None:
        """Call handler(topic, payload) for messages on the filter, now and after every reconnect."""
        ...

    def metrics(self) -> dict[str, float]:
        """Telemetry figures of the link (names declared in shared.metrics)."""
        ...


def encode_json(payload: BaseModel | Mapping[str, Any], replayed: bool = False) -> bytes:
    """Compact JSON bytes; `replayed` is set on enveloped payloads (those carrying a seq)."""
    if isinstance(payload, BaseModel):
        if replayed and "replayed" in type(payload).model_fields:
            payload = payload.model_copy(update={"replayed": True})
        return payload.model_dump_json().encode()
    data = dict(payload)
    if replayed and "seq" in data:
        data["replayed"] = True
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise LinkError(f"payload cannot be sent as JSON: {exc}") from exc


def check_topic(topic: str) -> str:
    """A topic a client may publish to: non-empty, no wildcards, no NUL, at most 65535 UTF-8 bytes."""
    if not topic or any(c in topic for c in "+#\x00") or len(topic.encode()) > 65535:
        raise LinkError(f"cannot publish to topic {topic!r}: it must be non-empty without '+', '#' or NUL")
    return topic
