"""Signed desired state: the retained message on `desired` that tells one device which model version to serve.

The wire format is the signed command envelope of shared.command_signing, around a DesiredState body:

    {"signed": "<JSON text of the DesiredState>", "key_id": "<16 hex>", "sig": "<base64 ed25519 signature>"}

Unlike a command it never expires: a device offline for a week must still converge when it returns. Replay is
stopped by `seq` instead (the issuer's command counter): a device applies a desired state only when its seq is above
the last one it applied, which it persists, so an old retained message republished by someone with broker write
access cannot move it back. An empty retained message clears the desired state (`is_cleared`). No I/O here.

A desired state names either a version (the device converges to it and stays) or a channel (the device follows that
channel's signed pointer, models/<name>/channels/<channel>.json, while the state is in force; shared.pointer). A
version state's signed text is what it was before channels existed (no `channel` key), so older agents still
verify and apply it; they refuse a channel state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.command_signing import MAX_ENVELOPE_BYTES, MAX_SEQ, is_signed, load_json_object, parse_envelope
from shared.errors import CommandError, CommandRefused
from shared.names import check_ident
from shared.signing import key_id

DESIRED_STATE_VERSION: Final = 1


class DesiredState(BaseModel):
    """What one device should serve, as signed by the fleet's command key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(default=DESIRED_STATE_VERSION, description="Desired-state format version.")
    fleet: str = Field(description="Fleet of the device (topic level 2).")
    device_id: str = Field(description="The one device this desired state is for.")
    model: str = Field(description="Model name to serve.")
    version: int | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="Model version to serve; the device stays there until told."
    )
    channel: str | None = Field(
        default=None,
        description="Instead of a version: the pointer channel to follow while this state is in force ('stable' is "
        "latest.json); never below a version already activated.",
    )
    allow_downgrade: bool = Field(
        default=False, description="Whether the device may go below a version it already activated (a rollback)."
    )
    rollout_id: str | None = Field(default=None, description="Rollout that set this state; None for a direct deploy.")
    canary: bool = Field(
        default=False,
        description="The device runs this version as a rollout's canary: it runs the shadow check when it can afford "
        "it (sync.shadow_canary_budget_ms). Left out of the signed text when false, so older agents still verify "
        "every other state.",
    )
    issued_at_ms: int = Field(ge=0, le=MAX_SEQ, description="Issuer's clock when signed, Unix ms (informational).")
    seq: int = Field(
        ge=1, le=MAX_SEQ, description="Issuer's sequence number (same counter as its commands); must grow per device."
    )

    _ids = field_validator("fleet", "device_id", "model")(lambda cls, v: check_ident(v, "desired state name"))
    _rollout = field_validator("rollout_id")(lambda cls, v: None if v is None else check_ident(v, "rollout id"))
    _channel = field_validator("channel")(lambda cls, v: None if v is None else check_ident(v, "channel name"))

    @model_validator(mode="after")
    def _version_or_channel(self) -> DesiredState:
        if (self.version is None) == (self.channel is None):
            raise ValueError("a desired state names exactly one of version and channel")
        if self.channel is not None and self.allow_downgrade:
            raise ValueError("a channel desired state cannot allow a downgrade; name the version to go back to")
        if self.canary and (self.version is None or self.allow_downgrade):
            raise ValueError("a canary desired state names the version it tries, and never a downgrade")
        return self

    @property
    def target(self) -> str:
        """What it asks for, as messages say it: 'v7' or 'channel canary'."""
        return f"v{self.version}" if self.version is not None else f"channel {self.channel}"


def encode_desired(state: DesiredState) -> str:
    """Deterministic JSON text of a desired state (sorted keys, no spaces); this text is what gets signed. The
    unused one of version/channel, and canary when false, are left out, so a version state reads as it did before
    channels and canaries."""
    doc = state.model_dump(mode="json")
    for key in ("version", "channel"):
        if doc[key] is None:
            del doc[key]
    if not doc["canary"]:
        del doc["canary"]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sign_desired(state: DesiredState, key: Ed25519PrivateKey) -> bytes:
    """The retained wire message for state, signed by key."""
    text = encode_desired(state)
    doc = {"signed": text, "key_id": key_id(key.public_key()),
           "sig": base64.b64encode(key.sign(text.encode("utf-8"))).decode()}
    return json.dumps(doc, separators=(",", ":")).encode()


def is_cleared(payload: bytes) -> bool:
    """Whether a retained desired message is the empty one that clears the desired state."""
    return len(payload) == 0


def verify_desired(
    payload: bytes, trusted: Mapping[str, Ed25519PublicKey], fleet: str, device_id: str, model: str | None = None
) -> DesiredState:
    """Check signature, key and addressee (and, given, the model the device follows) of a desired message;
    CommandRefused / CommandError when it fails.

    The sequence check is the caller's: `check_desired_sequence` against the last seq it applied and persisted.
    """
    if is_cleared(payload):
        raise CommandError("desired state message is empty: it clears the desired state, there is nothing to verify")
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise CommandError(f"desired state message is {len(payload)} bytes, over the {MAX_ENVELOPE_BYTES} limit")
    doc = load_json_object(payload, "desired state message")
    if not is_signed(doc):
        raise CommandRefused(
            "unsigned", "desired state is not signed; devices accept only desired state signed by a key in "
            "device.command_keys",
        )
    envelope = parse_envelope(doc)
    key = trusted.get(envelope.key_id)
    if key is None:
        raise CommandRefused(
            "unknown_key", f"desired state signed by key {envelope.key_id}, which is not in this device's "
            "device.command_keys",
        )
    try:
        data = envelope.signed.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CommandRefused("bad_signature", "signed desired state is not valid UTF-8 text") from exc
    try:
        key.verify(envelope.sig, data)
    except InvalidSignature as exc:
        raise CommandRefused(
            "bad_signature", f"signature by key {envelope.key_id} does not match the desired state (altered on the "
            "way, or signed with another key)",
        ) from exc
    try:
        state = DesiredState.model_validate(load_json_object(data, "signed desired state"))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise CommandError(f"signed desired state is malformed: {loc}: {first['msg']}") from exc
    if state.fleet != fleet or state.device_id != device_id:
        raise CommandRefused(
            "not_addressed", f"desired state is for device {state.device_id} of fleet {state.fleet}, not for this "
            f"device {device_id} of fleet {fleet}",
        )
    if model is not None and state.model != model:
        raise CommandRefused(
            "not_addressed", f"desired state names model {state.model!r} {state.target}, but this device follows "
            f"model {model!r} (sync.model); a desired state can only move a device between versions of its model",
        )
    return state


def check_desired_sequence(state: DesiredState, last_applied: int | None) -> None:
    """Refuse a desired state whose seq is not above the last one this device applied (a replayed old state)."""
    if last_applied is not None and state.seq <= last_applied:
        raise CommandRefused(
            "replayed", f"desired state with sequence {state.seq} is not above the last applied {last_applied} "
            "(an old retained message); publish a new one",
        )
