"""The shared exception family: every error a user can act on derives from EdgeferryError."""

from __future__ import annotations

from typing import Literal


class EdgeferryError(Exception):
    """Base of every error edgeferry raises on purpose; the CLI prints it as one line."""


class ConfigError(EdgeferryError):
    """A config file, env variable or flag has a value that cannot be used."""


class ManifestError(EdgeferryError):
    """A manifest or latest.json does not match the schema or names an unsafe file."""


class InvalidNameError(ManifestError, ValueError):
    """A file name, model name, fleet or device id is unsafe; a ValueError so pydantic reports where."""


class IntegrityError(EdgeferryError):
    """A file's sha256 or size does not match what the signed manifest says."""


class SignatureError(EdgeferryError):
    """A manifest is unsigned, signed by an untrusted key, or its signature is wrong."""


class StoreError(EdgeferryError):
    """The object store is unreachable, refuses access, or lacks an object."""


class StoreNotFoundError(StoreError):
    """The object store answered, but the key does not exist."""


class KeyFileError(EdgeferryError):
    """A signing key is missing, unreadable or not an ed25519 key."""


class CommandError(EdgeferryError):
    """An inbound command is malformed, oversized or unknown."""


RefusalReason = Literal[
    "unsigned", "unknown_key", "bad_signature", "expired", "not_yet_valid", "replayed", "not_addressed",
    "state_corrupt",
]
REFUSAL_REASONS: tuple[RefusalReason, ...] = (
    "unsigned", "unknown_key", "bad_signature", "expired", "not_yet_valid", "replayed", "not_addressed",
    "state_corrupt",
)


class CommandRefused(CommandError):
    """A command was refused for who sent it, when or to whom: unsigned, forged, expired, replayed, mis-addressed."""

    def __init__(self, reason: RefusalReason, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.request_id = request_id


class TaskContractError(EdgeferryError):
    """A task or output format has no head here, or a model's outputs do not fit its manifest's output contract."""
