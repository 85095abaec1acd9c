"""Signatures: only a trusted key's signature over the exact manifest bytes is accepted."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from shared.errors import KeyFileError, SignatureError
from shared.package import verify_manifest
from shared.signing import generate_keypair, key_id, load_private_key, load_public_key, sign, verify
from tests.shared.manifest_factory import make_manifest


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    pair = generate_keypair(tmp_path / "k.key")
    return pair.private, pair.public


def test_keygen_writes_private_key_0600(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(KeyFileError, match="exists"):
        generate_keypair(private)


def test_sign_then_verify(keys: tuple[Path, Path]) -> None:
    priv, pub = load_private_key(keys[0]), load_public_key(keys[1])
    data = make_manifest().to_bytes()
    sig = sign(data, priv)
    assert verify(data, sig, [pub]) == key_id(pub)


def test_any_flipped_byte_fails(keys: tuple[Path, Path]) -> None:
    priv, pub = load_private_key(keys[0]), load_public_key(keys[1])
    data = make_manifest().to_bytes()
    sig = sign(data, priv)
    for i in (0, len(data) // 2, len(data) - 2):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(SignatureError, match="does not match"):
            verify(bytes(tampered), sig, [pub])


def test_untrusted_key_and_malformed_signatures(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    other = generate_keypair(tmp_path / "other.key")
    data = b"payload"
    sig = sign(data, load_private_key(other.private))
    with pytest.raises(SignatureError, match="not among the trusted"):
        verify(data, sig, [load_public_key(keys[1])])
    with pytest.raises(SignatureError, match="no trusted"):
        verify(data, sig, [])
    for bad in (b"", b"{}", b"not json", json.dumps({"alg": "rsa", "key_id": "x", "signature": ""}).encode()):
        with pytest.raises(SignatureError):
            verify(data, bad, [load_public_key(other.public)])


def test_unsigned_needs_explicit_permission(keys: tuple[Path, Path]) -> None:
    body = make_manifest().to_bytes()
    with pytest.raises(SignatureError, match="unsigned"):
        verify_manifest(body, None, [load_public_key(keys[1])])
    manifest, kid = verify_manifest(body, None, [], allow_unsigned=True)
    assert manifest.version == 3 and kid is None


def test_missing_or_wrong_key_files(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(KeyFileError, match="keygen"):
        load_private_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("junk")
    with pytest.raises(KeyFileError, match="PEM"):
        load_private_key(tmp_path / "junk.key")
    with pytest.raises(KeyFileError):
        load_public_key(keys[0])
