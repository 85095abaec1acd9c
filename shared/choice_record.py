"""A runtime choice recorded ahead of time for a named target: signed beside a published version, never inside it.

`edgeferry bench --target NAME`, run on one device of a fleet of identical ones, measures every candidate with the
device's own code and writes `models/<name>/<version>/choices/<target>.json` plus `.sig`, signed with the package
key. The package's manifest, its sha256 and the signed latest.json stay exactly as published; the record names the
manifest's sha256, so it cannot be replayed onto another package. Devices verify it against sync.trusted_keys.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ManifestError, SignatureError
from shared.manifest import MAX_MANIFEST_BYTES, version_prefix
from shared.names import check_ident
from shared.payloads import BenchmarkResult
from shared.signing import sign, verify

RECORD_SCHEMA_VERSION = 1
CHOICES_DIR = "choices"


class ChoiceRecord(BaseModel):
    """choices/<target>.json: what one target measured for one package, and the choice it made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=RECORD_SCHEMA_VERSION, description="Record schema version.")
    target: str = Field(description="Target name devices name in sync.target (e.g. jetson-orin-nano).")
    recorded_at: datetime = Field(description="UTC time of the measurement.")
    recorded_by: str = Field(description="edgeferry version that measured.")
    host: dict[str, Any] = Field(
        description="Readable facts of the measuring machine (CPU model, flags, GPU); the fingerprint decides."
    )
    result: BenchmarkResult = Field(
        description="Package sha256, hardware fingerprint, runtime versions, every candidate's p50/p99 and the choice."
    )

    _check_target = field_validator("target")(lambda cls, v: check_ident(v, "target name"))

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, v: int) -> int:
        if v != RECORD_SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this build reads {RECORD_SCHEMA_VERSION})")
        return v

    @model_validator(mode="after")
    def _a_measured_choice(self) -> ChoiceRecord:
        if not self.result.measured or self.result.chosen is None:
            raise ValueError("a recorded choice must be measured and name the chosen candidate")
        if self.result.target != self.target:
            raise ValueError(f"result is for target {self.result.target!r}, the record for {self.target!r}")
        return self

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: these exact bytes are what the .sig signs."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


def record_key(name: str, version: int, target: str) -> str:
    """Object key of a target's record: models/<name>/<version>/choices/<target>.json."""
    return f"{version_prefix(name, version)}{CHOICES_DIR}/{check_ident(target, 'target name')}.json"


def record_signature_key(name: str, version: int, target: str) -> str:
    """Object key of the signature over a target's record."""
    return record_key(name, version, target) + ".sig"


def sign_record(record: ChoiceRecord, private_key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """The record's canonical bytes and the ed25519 signature over them."""
    body = record.to_bytes()
    return body, sign(body, private_key)


def verify_record(body: bytes, signature: bytes | None, trusted: list[Ed25519PublicKey]) -> ChoiceRecord:
    """Check the signature first (a record is never accepted unsigned), then parse; SignatureError/ManifestError."""
    if signature is None:
        raise SignatureError("the recorded choice has no signature (.sig); re-record it with 'edgeferry bench'")
    if len(body) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"recorded choice is {len(body)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        verify(body, signature, trusted)
    except SignatureError as exc:
        raise SignatureError(f"recorded choice: {exc}") from exc
    try:
        return ChoiceRecord.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ManifestError(f"recorded choice invalid at {loc}: {first['msg']}") from exc
