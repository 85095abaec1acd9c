"""The dashboards' exception family: every error the web app shows a user derives from DashboardError.

    DashboardError (shared.errors.EdgeferryError)
    +-- UnknownTarget     a device, rollout or page that does not exist (HTTP 404)
    +-- ActionRefused     an action the target's state does not allow, e.g. pausing a finished rollout (HTTP 409)
    +-- BadRequest        a malformed body or parameter (HTTP 400)
    +-- NotAllowed        the user's role may not do this (HTTP 403)
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
