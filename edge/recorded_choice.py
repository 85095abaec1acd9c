"""The runtime choice recorded for this device's target (edgeferry bench --target): fetched, verified, matched.

A record is only a shortcut past timing: it serves only when it names this exact package and this device's
hardware fingerprint and runtime versions, and runtime_bench still smoke-tests and hint-gates its pick. Anything
else (none recorded, a store error, a bad signature, a mismatch) is one log line and the device measures itself.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.package_fetch import RetryPolicy, with_retries
from edge.runtime_bench import PackageIdentity
from shared.choice_record import ChoiceRecord, record_key, record_signature_key, verify_record
from shared.errors import ManifestError, SignatureError, StoreError, StoreNotFoundError
from shared.object_store import ObjectStore
from shared.payloads import BenchmarkResult

log = logging.getLogger(__name__)


def wrong_package(record: ChoiceRecord, identity: PackageIdentity) -> str | None:
    """Why a signed record was made for another package than the installed one (a replay), or None."""
    r = record.result
    if (r.model, r.version) != (identity.model, identity.version):
        return f"it is for {r.model} v{r.version}"
    if r.package_sha256 != identity.package_sha256:
        return "it names another manifest (sha256) than the installed package"
    return None


def other_hardware(record: ChoiceRecord, identity: PackageIdentity) -> str | None:
    """Why a record for this package does not hold on this device (fingerprint or runtime versions), or None."""
    r = record.result
    if r.hardware != identity.hardware:
        return f"its hardware fingerprint {r.hardware} is not this device's {identity.hardware}"
    if r.runtimes != dict(identity.runtimes):
        theirs = ", ".join(f"{k} {v}" for k, v in sorted(r.runtimes.items()))
        ours = ", ".join(f"{k} {v}" for k, v in sorted(identity.runtimes.items()))
        return f"it was measured with {theirs}; this device runs {ours}"
    return None


class RecordedChoices:
    """Reads the signed record for one target; counts refused records and logs each outcome once per package."""

    def __init__(self, store: ObjectStore, target: str, policy: RetryPolicy) -> None:
        self.store = store
        self.target = target
        self.policy = policy
        self.rejects = 0
        self._noted: set[tuple[str, str]] = set()

    def _note(self, identity: PackageIdentity, level: int, message: str) -> None:
        """Log a message once per package (a restart or a re-install does not repeat it)."""
        if (identity.package_sha256, message) in self._noted:
            return
        self._noted.add((identity.package_sha256, message))
        log.log(level, "recorded runtime choice for target %s, %s v%d: %s", self.target, identity.model,
                identity.version, message)

    def _get(self, key: str) -> bytes | None:
        try:
            return with_retries(lambda: self.store.get(key), f"get {key}", self.policy)
        except StoreNotFoundError:
            return None

    def lookup(self, identity: PackageIdentity, trusted: list[Ed25519PublicKey]) -> BenchmarkResult | None:
        """The record's result when it is signed by a trusted key and matches this device exactly, else None."""
        key = record_key(identity.model, identity.version, self.target)
        try:
            body = self._get(key)
            signature = self._get(record_signature_key(identity.model, identity.version, self.target))
        except StoreError as exc:
            self._note(identity, logging.WARNING, f"cannot read {key} ({exc}); measuring here")
            return None
        if body is None:
            self._note(identity, logging.INFO, f"none recorded ({key}); measuring here")
            return None
        try:
            record = verify_record(body, signature, trusted)
        except (SignatureError, ManifestError) as exc:
            self.rejects += 1
            self._note(identity, logging.WARNING, f"refused: {exc}; measuring here")
            return None
        replay = (
            f"it holds target {record.target}" if record.target != self.target else wrong_package(record, identity)
        )
        if replay is not None:
            self.rejects += 1
            self._note(identity, logging.WARNING, f"refused: {replay} (replayed or misplaced); measuring here")
            return None
        why = other_hardware(record, identity)
        if why is not None:
            self._note(identity, logging.WARNING, f"does not match this device: {why}; measuring here")
            return None
        return record.result
