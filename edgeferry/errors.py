"""The CLI side's exception family (the operator tools in edgeferry/); the CLI prints each as one line."""

from __future__ import annotations

from shared.errors import EdgeferryError


class CommandClientError(EdgeferryError):
    """The command could not be signed, sent or answered: broker, ACL, key or sequence file."""


class NoReplyError(CommandClientError):
    """The command was sent but no reply arrived in time."""
