"""Download one package version into a staging directory: signature first, then resumable files, then checks."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.download_progress import PROGRESS_INTERVAL_S, DownloadProgress, summary_line
from edge.errors import InstallError, InsufficientSpace, PackageRejected
from edge.fault_injection import crash_point
from edge.package_verify import verify_files, verify_signed_manifest
from shared.errors import IntegrityError, StoreError, StoreNotFoundError
from shared.integrity import sha256_bytes
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
        try:
            store.download(key, dest, size)
        except IntegrityError as exc:
            dest.unlink(missing_ok=True)
            raise PackageRejected(f"{dest.name}: {exc}") from exc
        except OSError as exc:
            raise InstallError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        have = dest.stat().st_size if dest.exists() else 0
        if have < size:
            raise _ShortDownload(f"{key}: got {have} of {size} bytes")
        if have > size:
            dest.unlink()
            raise PackageRejected(f"{dest.name}: the store holds {have} bytes, the signed manifest says {size}")

    with_retries(attempt, f"download of {key}", policy)


def check_free_space(directory: Path, manifest: Manifest, reserve_bytes: int) -> None:
    """Refuse a package whose missing bytes plus the reserve exceed the free space where it is staged."""
    need = 0
    for fname, _, size in manifest.files():
        part = directory / fname
        have = part.stat().st_size if part.is_file() and not part.is_symlink() else 0
        need += max(0, size - have)
    free = shutil.disk_usage(directory).free
    if need + reserve_bytes > free:
        raise InsufficientSpace(
            f"{manifest.name} v{manifest.version} needs {need} more bytes in {directory.parent} but only {free} are "
            f"free ({reserve_bytes} kept spare, sync.min_free_mb); free space or lower sync.keep_versions"
        )


def fetch_manifest(
    store: ObjectStore,
    name: str,
    version: int,
    trusted: list[Ed25519PublicKey],
    allow_unsigned: bool,
    policy: RetryPolicy,
    expected_sha256: str | None = None,
) -> tuple[Manifest, bytes, bytes | None, str | None]:
    """Get manifest.json and its signature and verify the signature before parsing anything else."""
    prefix = version_prefix(name, version)
    try:
        body = with_retries(lambda: store.get(prefix + MANIFEST_FILE), f"get {prefix}{MANIFEST_FILE}", policy)
    except StoreNotFoundError as exc:
        raise StoreNotFoundError(f"{name} version {version} is not published in {store.uri} (no manifest)") from exc
    if expected_sha256 is not None and sha256_bytes(body) != expected_sha256:
        raise PackageRejected(
            f"{name} v{version}: manifest.json has sha256 {sha256_bytes(body)[:16]}..., but the signed latest.json "
            f"names {expected_sha256[:16]}... (a manifest swapped after publishing)"
        )
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
    reserve_bytes: int = 0,
    expected_sha256: str | None = None,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
) -> FetchedPackage:
    """Fetch a version into dest (a staging dir; partial files in it are resumed); verify hashes and ONNX there.

    A download that lasts logs one progress line per progress_interval_s (bytes, percent, rate), then one summary.
    """
    policy = policy or RetryPolicy()
    manifest, body, signature, kid = fetch_manifest(
        store, name, version, trusted, allow_unsigned, policy, expected_sha256
    )
    check_free_space(dest, manifest, reserve_bytes)
    (dest / MANIFEST_FILE).write_bytes(body)
    if signature is not None:
        (dest / SIGNATURE_FILE).write_bytes(signature)
    crash_point("after-manifest")
    prefix = version_prefix(name, version)
    files = list(manifest.files())
    what = f"{name} v{version}"
    with DownloadProgress(what, sum(size for _, _, size in files), log, interval_s=progress_interval_s) as progress:
        for fname, _, size in files:
            log.debug("downloading %s%s (%d bytes)", prefix, fname, size)
            progress.file(dest / fname, size)
            try:
                download_file(store, prefix + fname, dest / fname, size, policy)
            except StoreNotFoundError as exc:
                raise StoreNotFoundError(
                    f"{name} v{version}: {fname}, named by the signed manifest, is not in {store.uri} (yet)"
                ) from exc
    took_s = progress.elapsed_s()
    crash_point("after-download")
    verify_files(dest, manifest)
    crash_point("after-verify")
    log.info("%s, signed by %s", summary_line(what, progress.total, took_s),
             kid or "nobody: unsigned allowed")
    return FetchedPackage(manifest, dest, kid)
