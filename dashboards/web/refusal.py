"""A device message the web app's feed refuses: one of dashboards.errors' family, raised per message, never fatal.

It lives beside the feed (not in dashboards/errors.py) because no user request raises it: the MQTT feed counts it
against the sending device and logs each reason once.
"""

from __future__ import annotations

from dashboards.errors import DashboardError


class Refused(DashboardError):
    """One message refused (malformed, out of range, bad topic); it changed nothing."""

    status_code = 422

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind} refused: {reason}")
        self.kind = kind
        self.reason = reason
