"""The link when MQTT is disabled: accepts and discards, so a broker-less device never grows a queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from edge.link.base import MessageHandler
from edge.link.lanes import LaneBudget
from shared.topics import STATUS_STOPPED


class NullLink:
    """Accepts everything and keeps nothing but a count of what it discarded."""

    connected = False

    def __init__(self) -> None:
        self.discarded = 0

    def start(self) -> None:
        """Nothing to connect to."""

    def stop(self, status: str = STATUS_STOPPED) -> None:
        """Nothing to flush or announce."""

    def publish_json(
        self, topic: str, payload: BaseModel | Mapping[str, Any], retain: bool = False, *,
        budget: LaneBudget | None = None,
    ) -> None:
        """Discard (counted)."""
        self.discarded += 1

    def publish_json_many(self, topic: str, payloads: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Discard (counted)."""
        self.discarded += len(payloads)

    def publish_text(self, topic: str, text: str, retain: bool = False) -> None:
        """Discard (counted)."""
        self.discarded += 1

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, retained: bool = True) -> None:
        """Nothing ever arrives without a broker."""

    def metrics(self) -> dict[str, float]:
        """No queue, so no outbox figures."""
        return {}
