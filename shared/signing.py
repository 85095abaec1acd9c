"""ed25519 signing of manifests: the cloud signs, devices verify against keys they trust."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import KeyFileError, SignatureError

ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 4096


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable id of a public key: first 16 hex chars of sha256 over its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class KeyPairPaths:
    """Where keygen wrote a pair."""

    private: Path
    public: Path


def generate_keypair(private_path: Path, public_path: Path | None = None, overwrite: bool = False) -> KeyPairPaths:
    """Write a new ed25519 pair: private key PEM with mode 0600, public key PEM beside it."""
    public_path = public_path or private_path.with_suffix(".pub")
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise KeyFileError(f"{p} already exists; pass --force to overwrite it")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = private_path.with_name(private_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, private_path)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyPairPaths(private_path, public_path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an ed25519 private key PEM, with an actionable error when it is missing or wrong."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(f"signing key {path} not found; create one with 'edgeferry keygen {path}'") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an ed25519 public key PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read trusted public key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an ed25519 public key")
    return key


def sign(data: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Signature file content for data: small JSON naming algorithm and key id."""
    doc = {
        "alg": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(data)).decode(),
    }
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def verify(data: bytes, signature_file: bytes, trusted: list[Ed25519PublicKey]) -> str:
    """Check data against a signature file and trusted keys; return the signing key id."""
    if not trusted:
        raise SignatureError("no trusted public keys configured; cannot verify the manifest signature")
    if len(signature_file) > MAX_SIGNATURE_BYTES:
        raise SignatureError("signature file is too large")
    try:
        doc = json.loads(signature_file)
        alg, kid, sig = doc["alg"], doc["key_id"], base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError("signature file is malformed") from exc
    if alg != ALGORITHM:
        raise SignatureError(f"signature algorithm {alg!r} is not {ALGORITHM}")
    by_id = {key_id(k): k for k in trusted}
    key = by_id.get(kid)
    if key is None:
        raise SignatureError(f"manifest is signed by key {kid}, which is not among the trusted keys")
    try:
        key.verify(sig, data)
    except InvalidSignature as exc:
        raise SignatureError(f"manifest signature by key {kid} does not match its content") from exc
    return str(kid)
