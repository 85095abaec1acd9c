"""Verification of a model package: signature over the manifest, then sha256 of every file."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.errors import IntegrityError, SignatureError
from shared.integrity import verify_file
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, parse_manifest
from shared.names import check_file_name
from shared.signing import verify


def verify_manifest(
    manifest_bytes: bytes,
    signature: bytes | None,
    trusted: list[Ed25519PublicKey],
    allow_unsigned: bool = False,
) -> tuple[Manifest, str | None]:
    """Check the signature (unless unsigned packages are explicitly allowed), then parse; return (manifest, key id)."""
    kid: str | None = None
    if signature is None:
        if not allow_unsigned:
            raise SignatureError("package is unsigned (no manifest.json.sig) and unsigned packages are not allowed")
    else:
        kid = verify(manifest_bytes, signature, trusted)
    return parse_manifest(manifest_bytes), kid


def verify_package_dir(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest names is a regular file with its size and sha256; nothing else is there."""
    expected = {MANIFEST_FILE, SIGNATURE_FILE}
    for name, sha, size in manifest.files():
        check_file_name(name)
        verify_file(directory / name, sha, size)
        expected.add(name)
    for entry in directory.iterdir():
        if entry.is_symlink():
            raise IntegrityError(f"{entry.name}: symlinks are not allowed in a package")
        if entry.name not in expected:
            raise IntegrityError(f"{entry.name}: file not named by the manifest")
