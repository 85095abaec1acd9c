"""The dashboards' exception family: every error the web app shows a user derives from DashboardError.

    DashboardError (shared.errors.EdgeferryError)
    +-- UnknownTarget     a device, rollout or page that does not exist (HTTP 404)
    +-- ActionRefused     an action the target's state does not allow, e.g. pausing a finished rollout (HTTP 409)
    +-- BadRequest        a malformed body or parameter (HTTP 400)
    +-- NotAllowed        the user's role may not do this (HTTP 403)
    +-- TryLater          refused for now, e.g. too many failed sign-ins (HTTP 429) or too many at once (503)
    +-- Refused           one device message the MQTT feed refuses (malformed, out of range, bad topic); counted
                          against its device, never fatal, never shown to a user as a request's error
"""

from __future__ import annotations

from shared.errors import EdgeferryError


class DashboardError(EdgeferryError):
    """Base of every error the web app reports to a user as one line."""

    status_code = 500


class UnknownTarget(DashboardError):
    """The device or rollout named does not exist."""

    status_code = 404


class ActionRefused(DashboardError):
    """The target's current state does not allow the action; nothing was changed."""

    status_code = 409


class BadRequest(DashboardError):
    """A body or parameter is malformed; nothing was changed."""

    status_code = 400


class NotAllowed(DashboardError):
    """The signed-in user's role may not do this."""

    status_code = 403


class TryLater(DashboardError):
    """Refused for now (sign-in throttled or busy); the answer's Retry-After says when to try again."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int, status_code: int = 429) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status_code = status_code


class Refused(DashboardError):
    """One device message refused (malformed, out of range, bad topic); it changed nothing."""

    status_code = 422

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind} refused: {reason}")
        self.kind = kind
        self.reason = reason
