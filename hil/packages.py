"""Model packages for HIL runs: a trained package from a local store (re-signed with this run's key and published
under new version numbers, as the trainer's publisher would) or, without one, the tiny package tests build.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hil.errors import HilError
from shared.integrity import sha256_bytes
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Latest,
    Manifest,
    latest_key,
    latest_signature_key,
    parse_latest,
    parse_manifest,
    utcnow,
    version_prefix,
)
from shared.object_store import LocalStore
from shared.pointer import sign_pointer
from shared.signing import sign


class Sink(Protocol):
    """Where packages go (hil.cloud.CloudSide)."""

    def put(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class BasePackage:
    """A package's manifest and file contents, before it is given a version and signed."""

    manifest: Manifest
    files: dict[str, bytes]
    origin: str

    @property
    def precisions(self) -> list[str]:
        """Precisions of its variants, in manifest order."""
        return [v.precision for v in self.manifest.variants]

    def variant_bytes(self, precision: str) -> int:
        """Size of one variant's file."""
        for v in self.manifest.variants:
            if v.precision == precision:
                return v.bytes
        raise HilError(f"package {self.manifest.name} has no {precision} variant (has {self.precisions})")

    @property
    def total_bytes(self) -> int:
        """Every file of the package."""
        return sum(len(b) for b in self.files.values())


def load_trained(store_root: Path, name: str) -> BasePackage:
    """The latest version of `name` from a local store (as `make train-cloud` publishes it)."""
    store = LocalStore(store_root)
    latest = parse_latest(store.get(latest_key(name)))
    prefix = version_prefix(name, latest.version)
    manifest = parse_manifest(store.get(prefix + MANIFEST_FILE))
    files = {f: store.get(prefix + f) for f, _, _ in manifest.files()}
    return BasePackage(manifest, files, f"{store_root}/{prefix} (trained)")


def load_synthetic() -> BasePackage:
    """The tiny fp32/fp16/int8 package of tests/edge/package_factory (from a source checkout)."""
    try:
        from tests.edge.package_factory import build_package
    except ImportError as exc:
        raise HilError("no trained package (run `make train-cloud`) and no source checkout's tests/ to build "
                       "a small one") from exc
    manifest, files = build_package("digits", 1, precisions=("fp32", "fp16", "int8"))
    return BasePackage(manifest, files, "tests/edge/package_factory (synthetic 8x8)")


def load_package(store_root: Path, name: str = "digits") -> BasePackage:
    """A trained package when the store has one, else the synthetic one."""
    if (store_root / latest_key(name)).is_file():
        return load_trained(store_root, name)
    return load_synthetic()


class Publisher:
    """Publishes a base package as version N like the trainer: files, signature, manifest, then latest.json."""

    def __init__(self, sink: Sink, base: BasePackage, key: Ed25519PrivateKey) -> None:
        self.sink = sink
        self.base = base
        self.key = key
        self.published: dict[int, str] = {}  # version -> manifest sha256

    @property
    def name(self) -> str:
        """Model name."""
        return self.base.manifest.name

    def public_pem(self) -> bytes:
        """The public key a device must trust."""
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def upload(self, version: int) -> None:
        """Files, signature and manifest of a version, without moving latest.json."""
        manifest = self.base.manifest.model_copy(update={"version": version})
        body = manifest.to_bytes()
        prefix = version_prefix(self.name, version)
        for fname, data in self.base.files.items():
            self.sink.put(prefix + fname, data)
        self.sink.put(prefix + SIGNATURE_FILE, sign(body, self.key))
        self.sink.put(prefix + MANIFEST_FILE, body)
        self.published[version] = sha256_bytes(body)

    def point(self, version: int) -> float:
        """Move latest.json to an uploaded version (signature first); returns when it moved (unix s)."""
        import time

        now = utcnow()
        pointer = Latest(name=self.name, version=version, manifest_sha256=self.published[version],
                         published_at=now, expires_at=now + timedelta(days=30))
        signed = sign_pointer(pointer, self.key)
        self.sink.put(latest_signature_key(self.name), signed.signature)
        self.sink.put(latest_key(self.name), signed.body)
        return time.time()

    def publish(self, version: int) -> float:
        """Upload and point; returns the moment latest.json moved (unix s)."""
        self.upload(version)
        return self.point(version)
