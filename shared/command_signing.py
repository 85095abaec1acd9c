"""Signed MQTT commands: the wire format and the pure sign/verify checks shared by operators, devices and fleet.

A command on `cmd/<name>` is a small JSON envelope around the exact text that was signed:

    {"signed": "<JSON text of the command body>", "key_id": "<16 hex>", "sig": "<base64 ed25519 signature>"}

The signature covers the UTF-8 bytes of `signed` as sent, never a re-serialisation; the body is parsed only after
the signature verified. The body names the command, its request id and arguments, the target (a fleet, optionally
narrowed to one device or one group), when it was issued and when it expires (Unix ms), and the issuer's sequence
number, which a device requires to grow per key. No I/O here: keys, clocks and state come from the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import CommandError, CommandRefused
from shared.names import check_ident
from shared.payloads import MAX_COMMAND_BYTES
from shared.request_id import MAX_REQUEST_ID, check_request_id, text_request_id
from shared.signing import key_id
from shared.topics import COMMANDS

SIGNED_COMMAND_VERSION: Final = 1
# The body travels JSON-escaped inside the envelope; quotes and control characters can double its size.
MAX_ENVELOPE_BYTES = 2 * MAX_COMMAND_BYTES + 512
CLOCK_SKEW_MS = 30_000
MAX_LIFETIME_MS = 3_600_000
MAX_SEQ = 2**63 - 1
_SIGNATURE_BYTES = 64
# Key ids are 16 hex characters (shared.signing.key_id); anything outside this set is not worth echoing.
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Target(BaseModel):
    """Who a command is for: every device of a fleet, or one device, or the devices of one group in it."""

    model_config = ConfigDict(extra="forbid")

    fleet: str = Field(description="Fleet the command is for (topic level 2).")
    device: str | None = Field(default=None, description="One device id; None: not narrowed to a device.")
    group: str | None = Field(default=None, description="One device group (device.groups); None: not narrowed.")

    _fleet = field_validator("fleet")(lambda cls, v: check_ident(v, "fleet"))
    _names = field_validator("device", "group")(lambda cls, v: None if v is None else check_ident(v, "target"))

    @model_validator(mode="after")
    def _one_narrowing(self) -> Target:
        if self.device is not None and self.group is not None:
            raise ValueError("a target names a device or a group, not both")
        return self

    def describe(self) -> str:
        """Human form for messages: 'device cam-3 of fleet lab'."""
        if self.device is not None:
            return f"device {self.device} of fleet {self.fleet}"
        if self.group is not None:
            return f"group {self.group} of fleet {self.fleet}"
        return f"every device of fleet {self.fleet}"


class CommandBody(BaseModel):
    """The signed part of a command: everything a device acts on."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(default=SIGNED_COMMAND_VERSION, description="Signed command format version.")
    id: str = Field(min_length=1, max_length=MAX_REQUEST_ID, description="Request id echoed in the reply.")
    name: str = Field(description="Command name; must match the cmd/<name> topic it arrives on.")
    target: Target = Field(description="Who the command is for.")
    issued_at_ms: int = Field(ge=0, le=MAX_SEQ, description="Issuer's clock when signed, Unix ms.")
    expires_at_ms: int = Field(ge=0, le=MAX_SEQ, description="Refused from this time on, Unix ms.")
    seq: int = Field(ge=1, le=MAX_SEQ, description="Issuer's sequence number; must grow per key on each device.")
    args: dict[str, Any] = Field(default_factory=dict, description="The command's own fields (version, pin, ...).")

    _id = field_validator("id")(lambda cls, v: check_request_id(v))

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in COMMANDS:
            raise ValueError(f"unknown command {v!r}; commands are {', '.join(COMMANDS)}")
        return v

    @field_validator("args")
    @classmethod
    def _no_envelope_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted({"id", "name"} & v.keys())
        if clash:
            raise ValueError(f"args may not set {', '.join(clash)}: they are fields of the body")
        return v

    @model_validator(mode="after")
    def _ordered_times(self) -> CommandBody:
        if self.expires_at_ms <= self.issued_at_ms:
            raise ValueError("expires_at_ms must be after issued_at_ms")
        return self

    def command_payload(self) -> bytes:
        """The plain command JSON (id plus args) that shared.payloads.parse_command validates."""
        return json.dumps({**self.args, "id": self.id}).encode()


@dataclass(frozen=True)
class SignedEnvelope:
    """An envelope whose shape is valid; nothing in it is trusted yet."""

    signed: str
    key_id: str
    sig: bytes


def build_body(
    name: str,
    target: Target,
    *,
    request_id: str,
    seq: int,
    now_ms: int,
    expires_in_s: float,
    args: Mapping[str, Any] | None = None,
) -> CommandBody:
    """A command body issued now that expires expires_in_s later; CommandError on bad values."""
    if not 0 < expires_in_s * 1000 <= MAX_LIFETIME_MS:
        raise CommandError(f"expiry must be above 0 and at most {MAX_LIFETIME_MS // 1000} s, got {expires_in_s}")
    try:
        return CommandBody(
            id=request_id, name=name, target=target, issued_at_ms=now_ms,
            expires_at_ms=now_ms + max(1, round(expires_in_s * 1000)), seq=seq, args=dict(args or {}),
        )
    except ValidationError as exc:
        raise CommandError(f"bad {name} command: {_first_error(exc)}") from exc


def encode_body(body: CommandBody) -> str:
    """Deterministic JSON text of a body (sorted keys, no spaces); this text is what gets signed."""
    return json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sign_command(body: CommandBody, private_key: Ed25519PrivateKey) -> bytes:
    """The wire message for body, signed by private_key."""
    text = encode_body(body)
    doc = {"signed": text, "key_id": key_id(private_key.public_key()),
           "sig": base64.b64encode(private_key.sign(text.encode("utf-8"))).decode()}
    return json.dumps(doc, separators=(",", ":")).encode()


def next_sequence(last: int | None, now_ms: int) -> int:
    """An issuer's next sequence number: above the last one and never below the clock in ms.

    The clock floor keeps a new issuer state (a lost sequence file, a second operator machine) above anything a
    device accepted before, as long as the clocks roughly agree.
    """
    return min(MAX_SEQ, max(now_ms, (last or 0) + 1))


def load_json_object(payload: bytes, what: str = "command payload") -> dict[str, Any]:
    """Parse a JSON object; CommandError with a one-line reason for anything else."""
    try:
        raw = json.loads(payload) if payload else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{what} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise CommandError(f"{what} is nested too deeply") from exc
    if not isinstance(raw, dict):
        raise CommandError(f"{what} must be a JSON object")
    return raw


def is_signed(doc: Mapping[str, Any]) -> bool:
    """Whether a command object is a signed envelope (an unsigned command is the plain command JSON)."""
    return "sig" in doc or "signed" in doc


def parse_envelope(doc: Mapping[str, Any]) -> SignedEnvelope:
    """Check a signed envelope's shape; CommandError (malformed) or CommandRefused (bad_signature)."""
    extra = sorted(set(doc) - {"signed", "key_id", "sig"})
    if extra:
        raise CommandError(f"signed command has unknown fields: {', '.join(map(str, extra))}")
    signed, kid, sig = doc.get("signed"), doc.get("key_id"), doc.get("sig")
    if not isinstance(signed, str):
        raise CommandError("signed command needs 'signed': the command body as JSON text")
    if len(signed) > MAX_COMMAND_BYTES:
        raise CommandError(f"signed command body is {len(signed)} characters, over the {MAX_COMMAND_BYTES} limit")
    rid = request_id_in(signed)
    if not isinstance(kid, str) or not _KEY_ID.match(kid):
        raise CommandError("signed command needs 'key_id': the id of the signing key ('edgeferry keygen' prints it)")
    if not isinstance(sig, str):
        raise CommandRefused("bad_signature", f"command from key {kid} carries no signature text", rid)
    try:
        raw_sig = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CommandRefused("bad_signature", f"signature of the command from key {kid} is not base64", rid) from exc
    if len(raw_sig) != _SIGNATURE_BYTES:
        raise CommandRefused("bad_signature", f"signature of the command from key {kid} is not an ed25519 one", rid)
    return SignedEnvelope(signed=signed, key_id=kid, sig=raw_sig)


def verify_envelope(envelope: SignedEnvelope, trusted: Mapping[str, Ed25519PublicKey]) -> CommandBody:
    """Check the signature against the trusted keys (by key id), then parse the body it covers."""
    rid = request_id_in(envelope.signed)
    key = trusted.get(envelope.key_id)
    if key is None:
        raise CommandRefused(
            "unknown_key", f"command signed by key {envelope.key_id}, which is not in this device's "
            "device.command_keys", rid,
        )
    try:
        data = envelope.signed.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a \ud800 escape: no signer produced these bytes
        raise CommandRefused("bad_signature", "signed command body is not valid UTF-8 text", rid) from exc
    try:
        key.verify(envelope.sig, data)
    except InvalidSignature as exc:
        raise CommandRefused(
            "bad_signature", f"signature by key {envelope.key_id} does not match the command (altered on the way, "
            "or signed with another key)", rid,
        ) from exc
    raw = load_json_object(data, "signed command body")
    try:
        return CommandBody.model_validate(raw)
    except ValidationError as exc:
        raise CommandError(f"signed command body is malformed: {_first_error(exc)}") from exc


def check_addressed(body: CommandBody, name: str, fleet: str, device_id: str, groups: frozenset[str]) -> None:
    """Refuse a command signed for another command name, fleet, device or group."""
    if body.name != name:
        raise CommandRefused(
            "not_addressed", f"command was signed as {body.name!r} but arrived on cmd/{name}", body.id
        )
    t = body.target
    here = f"device {device_id} of fleet {fleet}"
    if t.fleet != fleet or (t.device is not None and t.device != device_id):
        raise CommandRefused("not_addressed", f"command is for {t.describe()}, not for this {here}", body.id)
    if t.group is not None and t.group not in groups:
        member = f"groups: {', '.join(sorted(groups))}" if groups else "no groups"
        raise CommandRefused(
            "not_addressed", f"command is for {t.describe()}; this {here} is not in it ({member})", body.id
        )


def check_time(body: CommandBody, now_ms: int, skew_ms: int = CLOCK_SKEW_MS) -> None:
    """Refuse an expired command, one issued in the future, or one that would stay valid for too long."""
    if now_ms >= body.expires_at_ms + skew_ms:
        raise CommandRefused(
            "expired", f"command expired {_span(now_ms - body.expires_at_ms)} ago; send a new one "
            "(or check the clocks of the sender and this device)", body.id,
        )
    if body.issued_at_ms > now_ms + skew_ms:
        raise CommandRefused(
            "not_yet_valid", f"command was issued {_span(body.issued_at_ms - now_ms)} in the future by this "
            "device's clock; check the clocks of the sender and this device", body.id,
        )
    # The lifetime is what the sender signed (expiry minus issue), not what is left of it: a command issued long ago
    # (or at 0) with an expiry still ahead would otherwise be accepted.
    if body.expires_at_ms - body.issued_at_ms > MAX_LIFETIME_MS:
        raise CommandRefused(
            "not_yet_valid", f"command was signed valid for {_span(body.expires_at_ms - body.issued_at_ms)}, "
            f"beyond the {_span(MAX_LIFETIME_MS)} limit; sign it with a shorter expiry", body.id,
        )


def check_sequence(body: CommandBody, key: str, last: int | None) -> None:
    """Refuse a sequence number that is not above the last one accepted from this key."""
    if last is not None and body.seq <= last:
        raise CommandRefused(
            "replayed", f"replayed command: sequence {body.seq} from key {key} is not above the last accepted "
            f"{last}", body.id,
        )


def request_id_in(text: str) -> str | None:
    """Best-effort request id of a body that is not (yet) trusted, only to address the error reply."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return text_request_id(raw.get("id")) if isinstance(raw, dict) else None


def reply_id(payload: bytes) -> str | None:
    """Best-effort request id of any command payload, signed or not, to address an error reply."""
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("signed"), str):
        return request_id_in(raw["signed"])
    return text_request_id(raw.get("id"))


def _span(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{loc}: {first['msg']}"
