"""Local checks of a package directory: signed manifest for the expected version, file hashes, ONNX guard."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.errors import PackageRejected
from edge.onnx_guard import check_package_models
from shared.errors import IntegrityError, ManifestError, SignatureError
from shared.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, SIGNATURE_FILE, Manifest
from shared.package import verify_manifest, verify_package_dir


def verify_signed_manifest(
    body: bytes,
    signature: bytes | None,
    name: str,
    version: int,
    trusted: list[Ed25519PublicKey],
    allow_unsigned: bool,
) -> tuple[Manifest, str | None]:
    """Check the signature, then parse, then refuse a manifest of another model or version (a replay)."""
    try:
        manifest, kid = verify_manifest(body, signature, trusted, allow_unsigned)
    except (SignatureError, ManifestError) as exc:
        raise PackageRejected(f"{name} v{version}: {exc}") from exc
    if manifest.name != name or manifest.version != version:
        raise PackageRejected(
            f"manifest for {name} v{version} describes {manifest.name} v{manifest.version} (replayed or misplaced)"
        )
    return manifest, kid


def verify_files(directory: Path, manifest: Manifest) -> None:
    """sha256 and size of every file, no symlinks or strangers in the directory, no ONNX escaping it."""
    try:
        verify_package_dir(directory, manifest)
    except (IntegrityError, ManifestError) as exc:
        raise PackageRejected(f"{manifest.name} v{manifest.version}: {exc}") from exc
    except OSError as exc:
        raise PackageRejected(f"{manifest.name} v{manifest.version}: cannot read {directory}: {exc}") from exc
    check_package_models(directory, manifest)


def _read_small(path: Path) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise PackageRejected(f"{path}: missing or not a regular file")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise PackageRejected(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
    return path.read_bytes()


def verify_package(
    directory: Path, name: str, version: int, trusted: list[Ed25519PublicKey], allow_unsigned: bool
) -> Manifest:
    """Full check of a package directory from its own manifest and signature, as done after install and at start."""
    body = _read_small(directory / MANIFEST_FILE)
    sig_path = directory / SIGNATURE_FILE
    signature = _read_small(sig_path) if sig_path.exists() or sig_path.is_symlink() else None
    manifest, _ = verify_signed_manifest(body, signature, name, version, trusted, allow_unsigned)
    verify_files(directory, manifest)
    return manifest
