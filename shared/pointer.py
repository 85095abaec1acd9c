"""The signed latest.json pointer: built and signed by the publisher, verified and judged by devices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import ManifestError, SignatureError
from shared.manifest import Latest, parse_latest
from shared.signing import sign, verify

DEFAULT_POINTER_TTL = timedelta(days=30)


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
    body: bytes, signature: bytes | None, trusted: list[Ed25519PublicKey], allow_unsigned: bool
) -> tuple[Latest, str | None]:
    """Check the pointer's signature (unless unsigned is allowed and there is none), then parse it."""
    if signature is None:
        if not allow_unsigned:
            raise SignatureError(
                "latest.json is unsigned (no latest.json.sig) and unsigned packages are not allowed; "
                "re-sign it with 'edgeferry publish-pointer'"
            )
        return parse_latest(body), None
    try:
        kid = verify(body, signature, trusted)
    except SignatureError as exc:
        raise SignatureError(f"latest.json: {exc}") from exc
    latest = parse_latest(body)
    if latest.expires_at is None:
        raise SignatureError("latest.json is signed but has no expires_at; re-sign it with 'edgeferry publish-pointer'")
    return latest, kid


def is_expired(latest: Latest, now: datetime) -> bool:
    """Whether a pointer is past its expiry (pointers without one never expire: unsigned, allowed legacy)."""
    return latest.expires_at is not None and now >= latest.expires_at
