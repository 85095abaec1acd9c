"""Download one package version into a staging directory: signature first, then resumable files, then checks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.errors import PackageRejected
from edge.fault_injection import crash_point
from edge.package_verify import verify_files, verify_signed_manifest
from shared.errors import StoreError, StoreNotFoundError
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, version_prefix
from shared.object_store import ObjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff; sleep is injectable so tests need not wait."""

    attempts: int = 5
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt: backoff_s doubling, capped at MAX_BACKOFF_S."""
        return float(min(MAX_BACKOFF_S, self.backoff_s * 2 ** (failed_attempts - 1)))


@dataclass(frozen=True)
class FetchedPackage:
    """A downloaded version whose signature and file hashes were checked in its staging directory."""

    manifest: Manifest
    directory: Path
    key_id: str | None


class _ShortDownload(StoreError):
    """The transfer ended before the manifest's size; resume on the next attempt."""


def with_retries(op: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Run op, retrying StoreError (not not-found) with backoff; the last error propagates."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return op()
        except StoreNotFoundError:
            raise
        except StoreError as exc:
            if attempt == policy.attempts:
                raise StoreError(f"{what} failed after {attempt} attempts: {exc}") from exc
            delay = policy.delay(attempt)
            log.warning("%s failed (attempt %d/%d): %s; retrying in %.1fs", what, attempt, policy.attempts, exc, delay)
            policy.sleep(delay)
    raise AssertionError("unreachable: attempts >= 1")


def download_file(store: ObjectStore, key: str, dest: Path, size: int, policy: RetryPolicy) -> None:
    """Download key to dest until it has exactly size bytes, resuming a partial dest on each retry."""

    def attempt() -> None:
        store.download(key, dest, size)
        have = dest.stat().st_size if dest.exists() else 0
        if have < size:
            raise _ShortDownload(f"{key}: got {have} of {size} bytes")
        if have > size:
            dest.unlink()
            raise PackageRejected(f"{dest.name}: the store holds {have} bytes, the signed manifest says {size}")

    with_retries(attempt, f"download of {key}", policy)


def fetch_manifest(
    store: ObjectStore,
    name: str,
    version: int,
    trusted: list[Ed25519PublicKey],
    allow_unsigned: bool,
    policy: RetryPolicy,
) -> tuple[Manifest, bytes, bytes | None, str | None]:
    """Get manifest.json and its signature and verify the signature before parsing anything else."""
    prefix = version_prefix(name, version)
    try:
        body = with_retries(lambda: store.get(prefix + MANIFEST_FILE), f"get {prefix}{MANIFEST_FILE}", policy)
    except StoreNotFoundError as exc:
        raise StoreNotFoundError(f"{name} version {version} is not published in {store.uri} (no manifest)") from exc
    try:
        signature: bytes | None = with_retries(
            lambda: store.get(prefix + SIGNATURE_FILE), f"get {prefix}{SIGNATURE_FILE}", policy
        )
    except StoreNotFoundError:
        signature = None
    manifest, kid = verify_signed_manifest(body, signature, name, version, trusted, allow_unsigned)
    return manifest, body, signature, kid


def fetch_version(
    store: ObjectStore,
    name: str,
    version: int,
    dest: Path,
    trusted: list[Ed25519PublicKey],
    *,
    allow_unsigned: bool = False,
    policy: RetryPolicy | None = None,
) -> FetchedPackage:
    """Fetch a version into dest (a staging dir; partial files in it are resumed); verify hashes and ONNX there."""
    policy = policy or RetryPolicy()
    manifest, body, signature, kid = fetch_manifest(store, name, version, trusted, allow_unsigned, policy)
    (dest / MANIFEST_FILE).write_bytes(body)
    if signature is not None:
        (dest / SIGNATURE_FILE).write_bytes(signature)
    crash_point("after-manifest")
    prefix = version_prefix(name, version)
    for fname, _, size in manifest.files():
        log.info("downloading %s%s (%d bytes)", prefix, fname, size)
        try:
            download_file(store, prefix + fname, dest / fname, size, policy)
        except StoreNotFoundError as exc:
            raise PackageRejected(f"{name} v{version}: {fname}, named by the manifest, is not in the store") from exc
    crash_point("after-download")
    verify_files(dest, manifest)
    crash_point("after-verify")
    log.info("fetched %s v%d (signed by %s)", name, version, kid or "nobody: unsigned allowed")
    return FetchedPackage(manifest, dest, kid)
