"""The signed latest.json pointer: built and signed by the publisher, verified and judged by devices.

Channels: besides latest.json (the `stable` channel, read by every device that names no channel), a model may have
one signed pointer per channel at models/<name>/channels/<channel>.json (`edgeferry publish-pointer --channel`), so
an operator chooses what a group of devices follows. A channel pointer names its channel inside the signed bytes, so
a validly signed pointer of one channel copied over another's (or over latest.json) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, ValidationError, field_validator

from shared.errors import ManifestError, SignatureError
from shared.manifest import MAX_MANIFEST_BYTES, Latest, latest_key, latest_signature_key, model_prefix, parse_latest
from shared.names import check_ident
from shared.signing import sign, verify

DEFAULT_POINTER_TTL = timedelta(days=30)
# The channel latest.json is: what a device follows when it names no channel, and what every publish moves.
DEFAULT_CHANNEL = "stable"
CHANNELS_DIR = "channels"


class ChannelPointer(Latest):
    """A channel's pointer: latest.json's fields plus the channel it was signed for."""

    channel: str = Field(description="Channel this pointer was signed for (never the default channel).")

    _check_channel = field_validator("channel")(lambda cls, v: check_ident(v, "channel name"))


def check_channel(channel: str) -> str:
    """A channel name safe in object keys (the default channel included)."""
    return check_ident(channel, "channel name")


def pointer_key(name: str, channel: str = DEFAULT_CHANNEL) -> str:
    """Object key of a channel's pointer: latest.json for the default channel, channels/<channel>.json otherwise."""
    if check_channel(channel) == DEFAULT_CHANNEL:
        return latest_key(name)
    return f"{model_prefix(name)}{CHANNELS_DIR}/{channel}.json"


def pointer_signature_key(name: str, channel: str = DEFAULT_CHANNEL) -> str:
    """Object key of the signature over a channel's pointer."""
    if check_channel(channel) == DEFAULT_CHANNEL:
        return latest_signature_key(name)
    return pointer_key(name, channel) + ".sig"


def pointer_file(channel: str) -> str:
    """How messages name a channel's pointer file."""
    return "latest.json" if channel == DEFAULT_CHANNEL else f"{CHANNELS_DIR}/{channel}.json"


def parse_pointer(data: bytes, channel: str = DEFAULT_CHANNEL) -> Latest:
    """Parse a channel's pointer bytes; a pointer signed for another channel (or latest.json's) is refused."""
    if channel == DEFAULT_CHANNEL:
        return parse_latest(data)
    what = pointer_file(channel)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and "channel" not in raw:
        raise ManifestError(f"{what} names no channel (a copy of latest.json?); re-sign it with "
                            f"'edgeferry publish-pointer --channel {channel}'")
    try:
        pointer = ChannelPointer.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ManifestError(f"{what} invalid at {loc}: {first['msg']}") from exc
    if pointer.channel != channel:
        raise ManifestError(f"{what} was signed for channel {pointer.channel!r}, not {channel!r}; a pointer cannot "
                            "be copied between channels")
    return pointer


@dataclass(frozen=True)
class SignedPointer:
    """latest.json bytes and the signature over them, written together (signature first)."""

    latest: Latest
    body: bytes
    signature: bytes


def sign_pointer(latest: Latest, private_key: Ed25519PrivateKey) -> SignedPointer:
    """Canonical bytes of the pointer and their ed25519 signature."""
    if latest.expires_at is None:
        raise ManifestError("a signed latest.json needs expires_at; give the pointer a TTL")
    body = latest.to_bytes()
    return SignedPointer(latest, body, sign(body, private_key))


def with_expiry(latest: Latest, now: datetime, ttl: timedelta) -> Latest:
    """The same pointer with a fresh expiry (re-signing extends it without republishing)."""
    if ttl <= timedelta(0):
        raise ManifestError(f"pointer TTL must be positive, got {ttl}")
    return latest.model_copy(update={"expires_at": now + ttl})


def verify_pointer(
    body: bytes,
    signature: bytes | None,
    trusted: list[Ed25519PublicKey],
    allow_unsigned: bool,
    channel: str = DEFAULT_CHANNEL,
) -> tuple[Latest, str | None]:
    """Check the pointer's signature (unless unsigned is allowed and there is none), then parse it."""
    what = pointer_file(channel)
    resign = "'edgeferry publish-pointer'" + ("" if channel == DEFAULT_CHANNEL else f" --channel {channel}")
    if signature is None:
        if not allow_unsigned:
            raise SignatureError(
                f"{what} is unsigned (no {what}.sig) and unsigned packages are not allowed; re-sign it with {resign}"
            )
        return parse_pointer(body, channel), None
    try:
        kid = verify(body, signature, trusted)
    except SignatureError as exc:
        raise SignatureError(f"{what}: {exc}") from exc
    latest = parse_pointer(body, channel)
    if latest.expires_at is None:
        raise SignatureError(f"{what} is signed but has no expires_at; re-sign it with {resign}")
    return latest, kid


def is_expired(latest: Latest, now: datetime) -> bool:
    """Whether a pointer is past its expiry (pointers without one never expire: unsigned, allowed legacy)."""
    return latest.expires_at is not None and now >= latest.expires_at
