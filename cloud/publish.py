"""Publishing a verified package: files, signature, manifest, then latest.json.sig and latest.json last."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud.errors import PublishError
from shared.errors import EdgeferryError, IntegrityError, StoreNotFoundError
from shared.integrity import sha256_bytes, verify_file
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Latest,
    Manifest,
    latest_key,
    latest_signature_key,
    model_prefix,
    parse_latest,
    utcnow,
    version_prefix,
)
from shared.object_store import LocalStore, ObjectStore
from shared.package import verify_manifest, verify_package_dir
from shared.pointer import (
    DEFAULT_CHANNEL,
    DEFAULT_POINTER_TTL,
    ChannelPointer,
    parse_pointer,
    pointer_file,
    pointer_key,
    pointer_signature_key,
    sign_pointer,
    verify_pointer,
    with_expiry,
)
from shared.signing import sign
from shared.store_config import StoreConfig
from shared.store_open import open_store

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


def preflight_store(config: StoreConfig, name: str) -> ObjectStore:
    """The store a publish will write to, checked before any work (StoreError): a directory store must be
    writable, and every store is reached once (endpoint, credentials, bucket) by reading the model's versions."""
    store = open_store(config)
    if isinstance(store, LocalStore):
        store.check_writable()
    next_version(store, name)
    return store


@dataclass(frozen=True)
class Published:
    """Where a package landed."""

    name: str
    version: int
    uri: str
    manifest_sha256: str
    key_id: str


def write_pointer(
    store: ObjectStore, latest: Latest, private_key: Ed25519PrivateKey, channel: str = DEFAULT_CHANNEL
) -> Latest:
    """Signature first, pointer last: a reader that sees the new pointer already finds its signature."""
    signed = sign_pointer(latest, private_key)
    store.put(pointer_signature_key(latest.name, channel), signed.signature)
    store.put(pointer_key(latest.name, channel), signed.body)
    return latest


def read_channel(store: ObjectStore, name: str, channel: str) -> Latest | None:
    """A channel's pointer as stored (latest.json for the default channel), or None when it has none yet."""
    try:
        return parse_pointer(store.get(pointer_key(name, channel)), channel)
    except StoreNotFoundError:
        return None


def _signed_manifest_sha(store: ObjectStore, name: str, version: int, private_key: Ed25519PrivateKey) -> str:
    """sha256 of a published version's manifest, after checking this key signed it."""
    prefix = version_prefix(name, version)
    try:
        body = store.get(prefix + MANIFEST_FILE)
        verify_manifest(body, store.get(prefix + SIGNATURE_FILE), [private_key.public_key()])
    except StoreNotFoundError as exc:
        raise PublishError(f"{name} v{version} is not published in {store.uri}; publish it first") from exc
    except EdgeferryError as exc:
        raise PublishError(f"{name} v{version} in {store.uri} is not signed by this key: {exc}") from exc
    return sha256_bytes(body)


def publish_pointer(
    store: ObjectStore,
    name: str,
    private_key: Ed25519PrivateKey,
    ttl: timedelta = DEFAULT_POINTER_TTL,
    *,
    channel: str = DEFAULT_CHANNEL,
    version: int | None = None,
) -> Latest:
    """Re-sign a channel's pointer with a fresh expiry, or (version given) move it to a published version signed
    by this key; the default channel is latest.json, another one models/<name>/channels/<channel>.json."""
    try:
        what = pointer_file(channel)
        current = read_channel(store, name, channel)
    except EdgeferryError as exc:
        raise PublishError(f"cannot read the {channel!r} pointer of {name!r} in {store.uri}: {exc}") from exc
    now = utcnow()
    if version is None:
        if current is None:
            raise PublishError(f"no {what} for {name!r} in {store.uri}; publish a package first"
                               + ("" if channel == DEFAULT_CHANNEL else " and give --model-version"))
        if _signed_manifest_sha(store, name, current.version, private_key) != current.manifest_sha256:
            raise PublishError(f"{what} of {name!r} names a manifest sha256 that v{current.version} does not have")
        pointer = current
    else:
        sha = _signed_manifest_sha(store, name, version, private_key)
        fields = {"name": name, "version": version, "manifest_sha256": sha, "published_at": now}
        pointer = Latest(**fields) if channel == DEFAULT_CHANNEL else ChannelPointer(**fields, channel=channel)
        if current is not None and version < current.version:
            log.warning("%s of %s moves back from v%d to v%d: devices that served or saw v%d stay there "
                        "(anti-rollback)", what, name, current.version, version, current.version)
    try:
        fresh = with_expiry(pointer, now, ttl)
    except EdgeferryError as exc:
        raise PublishError(str(exc)) from exc
    return write_pointer(store, fresh, private_key, channel)


def publish(
    store: ObjectStore,
    package_dir: Path,
    manifest: Manifest,
    private_key: Ed25519PrivateKey,
    pointer_ttl: timedelta = DEFAULT_POINTER_TTL,
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
        now = utcnow()
        latest = Latest(
            name=manifest.name,
            version=manifest.version,
            manifest_sha256=sha256_bytes(body),
            published_at=now,
        )
        try:
            latest = with_expiry(latest, now, pointer_ttl)
        except EdgeferryError as exc:
            raise PublishError(str(exc)) from exc
        write_pointer(store, latest, private_key)
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
    expected_sha: str | None = None
    if version is None:
        try:
            pointer = store.get(latest_key(name))
        except StoreNotFoundError as exc:
            raise PublishError(f"no published versions of {name!r} in {store.uri}") from exc
        try:
            sig_body: bytes | None = store.get(latest_signature_key(name))
        except StoreNotFoundError:
            sig_body = None
        latest, _ = verify_pointer(pointer, sig_body, trusted, allow_unsigned=False)
        version, expected_sha = latest.version, latest.manifest_sha256
    prefix = version_prefix(name, version)
    body = store.get(prefix + MANIFEST_FILE)
    if expected_sha is not None and sha256_bytes(body) != expected_sha:
        raise IntegrityError(f"latest.json of {name!r} names a manifest sha256 that v{version} does not have")
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
