"""Publishing a verified package: files first, then signature and manifest, then latest.json."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud.errors import PublishError
from shared.errors import IntegrityError, StoreNotFoundError
from shared.integrity import sha256_bytes, verify_file
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Latest,
    Manifest,
    latest_key,
    model_prefix,
    parse_latest,
    utcnow,
    version_prefix,
)
from shared.object_store import ObjectStore
from shared.package import verify_manifest, verify_package_dir
from shared.signing import sign

log = logging.getLogger(__name__)
_VERSION_KEY = re.compile(r"^(\d+)/")


def existing_versions(store: ObjectStore, name: str) -> list[int]:
    """Every version number with any object under it, complete or not, so none is ever reused."""
    prefix = model_prefix(name)
    found = set()
    for key in store.list(prefix):
        m = _VERSION_KEY.match(key[len(prefix) :])
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def read_latest(store: ObjectStore, name: str) -> Latest | None:
    """The model's latest.json, or None before the first publish."""
    try:
        return parse_latest(store.get(latest_key(name)))
    except StoreNotFoundError:
        return None


def next_version(store: ObjectStore, name: str) -> int:
    """One above everything the store has seen for this model: versions only increase."""
    seen = existing_versions(store, name)
    latest = read_latest(store, name)
    top = max([0, *seen, latest.version if latest else 0])
    return top + 1


@dataclass(frozen=True)
class Published:
    """Where a package landed."""

    name: str
    version: int
    uri: str
    manifest_sha256: str
    key_id: str


def publish(
    store: ObjectStore,
    package_dir: Path,
    manifest: Manifest,
    private_key: Ed25519PrivateKey,
) -> Published:
    """Upload a verified package under its version; readers see it only once latest.json moves."""
    verify_package_dir_files(package_dir, manifest)
    body = manifest.to_bytes()
    signature = sign(body, private_key)
    # Self-check before anything leaves the machine.
    _, kid = verify_manifest(body, signature, [private_key.public_key()])
    prefix = version_prefix(manifest.name, manifest.version)
    if store.exists(prefix + MANIFEST_FILE):
        raise PublishError(f"{manifest.name} version {manifest.version} already exists in {store.uri}")
    for name, _, _ in manifest.files():
        log.info("uploading %s", name)
        store.put_file(prefix + name, package_dir / name)
    store.put(prefix + SIGNATURE_FILE, signature)
    store.put(prefix + MANIFEST_FILE, body)
    current = read_latest(store, manifest.name)
    if current is None or current.version < manifest.version:
        latest = Latest(
            name=manifest.name,
            version=manifest.version,
            manifest_sha256=sha256_bytes(body),
            published_at=utcnow(),
        )
        store.put(latest_key(manifest.name), latest.to_bytes())
    return Published(manifest.name, manifest.version, f"{store.uri}/{prefix}", sha256_bytes(body), kid or "")


def verify_package_dir_files(package_dir: Path, manifest: Manifest) -> None:
    """The local files match the manifest before upload (catches a stale work dir)."""
    try:
        for name, sha, size in manifest.files():
            verify_file(package_dir / name, sha, size)
    except (IntegrityError, OSError) as exc:
        raise PublishError(f"package in {package_dir} does not match its manifest: {exc}") from exc


def verify_published(
    store: ObjectStore, name: str, version: int | None, trusted: list[Ed25519PublicKey]
) -> Manifest:
    """Download a published version and check signature and every sha256, as a device would."""
    if version is None:
        latest = read_latest(store, name)
        if latest is None:
            raise PublishError(f"no published versions of {name!r} in {store.uri}")
        version = latest.version
    prefix = version_prefix(name, version)
    body = store.get(prefix + MANIFEST_FILE)
    try:
        sig: bytes | None = store.get(prefix + SIGNATURE_FILE)
    except StoreNotFoundError:
        sig = None
    manifest, _ = verify_manifest(body, sig, trusted)
    with tempfile.TemporaryDirectory(prefix="edgeferry-verify-") as tmp:
        d = Path(tmp)
        for fname, _, size in manifest.files():
            store.download(prefix + fname, d / fname, size)
        (d / MANIFEST_FILE).write_bytes(body)
        if sig is not None:
            (d / SIGNATURE_FILE).write_bytes(sig)
        verify_package_dir(d, manifest)
    return manifest
