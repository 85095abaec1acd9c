"""What the control plane needs from the broker to reach devices: publish one message and know it arrived."""

from __future__ import annotations

from typing import Protocol


class Publisher(Protocol):
    """Publishes QoS 1 and returns once the broker acknowledged it; BrokerError otherwise."""

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Send one message."""
