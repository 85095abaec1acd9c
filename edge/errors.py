"""The edge agent's exception family."""

from __future__ import annotations

from shared.errors import EdgeferryError


class AgentError(EdgeferryError):
    """Base of agent errors; the agent logs them, counts them and keeps serving the last good model."""


class SourceError(AgentError):
    """A frame or sensor source cannot be opened or read."""


class BackendError(AgentError):
    """An inference backend cannot load or run a model."""


class PackageRejected(AgentError):
    """A model package failed verification, safety checks or its smoke test; it is never served."""


class InstallError(AgentError):
    """A verified package could not be installed into the local cache."""


class InsufficientSpace(PackageRejected):
    """A package does not fit the cache's free space; refused before download and tried again later."""


class LinkError(AgentError):
    """The broker link is misconfigured (TLS files, topic, payload)."""


class OutboxError(AgentError):
    """The store-and-forward queue cannot be opened or written."""


class CommandStateError(AgentError):
    """The command sequence state cannot be written; the command is not run."""


class SnapshotError(AgentError):
    """An object snapshot cannot be kept on disk (directory unusable, disk full); events still go out."""
