"""sha256 checks of package files against the signed manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.errors import IntegrityError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def verify_file(path: Path, sha256: str, size: int) -> None:
    """Raise IntegrityError unless path is a regular file of the given size and sha256."""
    if path.is_symlink() or not path.is_file():
        raise IntegrityError(f"{path.name}: not a regular file")
    actual_size = path.stat().st_size
    if actual_size != size:
        raise IntegrityError(f"{path.name}: {actual_size} bytes, manifest says {size}")
    actual = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(f"{path.name}: sha256 {actual[:12]}... does not match manifest {sha256[:12]}...")
