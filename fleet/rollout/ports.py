"""What the rollout controller needs from the rest of the control plane, as small interfaces."""

from __future__ import annotations

from typing import Protocol


class DesiredPublisher(Protocol):
    """Publishes a device's effective desired state (its own override, else its group's), retained and signed."""

    def publish_device(self, device_id: str) -> None:
        """Publish what the desired table now says for device_id (clear the retained message when nothing does)."""
