"""Before anything is sent: the model version exists in the store and verifies there as a device would check it
(signature against the trusted keys, the manifest naming this model and version, every file's size and sha256)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleet.errors import VersionCheckError
from shared.errors import EdgeferryError, StoreNotFoundError
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, version_prefix
from shared.names import check_ident
from shared.object_store import ObjectStore
from shared.package import verify_manifest, verify_package_dir
from shared.pointer import check_channel, pointer_key, pointer_signature_key, verify_pointer


class PackageChecker:
    """Checks versions in one store; a version that passed is remembered for the life of the process."""

    def __init__(self, store: ObjectStore, trusted: list[Ed25519PublicKey], allow_unsigned: bool = False) -> None:
        self.store = store
        self.trusted = trusted
        self.allow_unsigned = allow_unsigned
        self._passed: dict[tuple[str, int], Manifest] = {}

    def check(self, model: str, version: int) -> Manifest:
        """The verified manifest of model v<version>; VersionCheckError naming what is wrong otherwise."""
        check_ident(model, "model name")
        if version < 1:
            raise VersionCheckError(f"version must be 1 or more, got {version}")
        if (model, version) in self._passed:
            return self._passed[(model, version)]
        if not self.trusted and not self.allow_unsigned:
            raise VersionCheckError("no trusted package keys configured (packages.trusted_keys): cannot verify "
                                    f"{model} v{version} before deploying it")
        prefix = version_prefix(model, version)
        where = f"{model} v{version} in {self.store.uri}"
        try:
            body = self.store.get(prefix + MANIFEST_FILE)
        except StoreNotFoundError as exc:
            raise VersionCheckError(f"{where} does not exist (no {prefix}{MANIFEST_FILE})") from exc
        except EdgeferryError as exc:
            raise VersionCheckError(f"cannot read {where}: {exc}") from exc
        try:
            try:
                sig: bytes | None = self.store.get(prefix + SIGNATURE_FILE)
            except StoreNotFoundError:
                sig = None
            manifest, _ = verify_manifest(body, sig, self.trusted, self.allow_unsigned)
            if manifest.name != model or manifest.version != version:
                raise VersionCheckError(f"{where}: its manifest describes {manifest.name} v{manifest.version}")
            with tempfile.TemporaryDirectory(prefix="edgeferry-fleet-check-") as tmp:
                d = Path(tmp)
                for name, _, size in manifest.files():
                    self.store.download(prefix + name, d / name, size)
                (d / MANIFEST_FILE).write_bytes(body)
                if sig is not None:
                    (d / SIGNATURE_FILE).write_bytes(sig)
                verify_package_dir(d, manifest)
        except VersionCheckError:
            raise
        except EdgeferryError as exc:
            raise VersionCheckError(f"{where} fails verification: {exc}") from exc
        self._passed[(model, version)] = manifest
        return manifest

    def check_channel(self, model: str, channel: str) -> Manifest:
        """The verified manifest of the version model's channel pointer names now; VersionCheckError when the
        pointer is missing, fails its signature, or names a version that fails its checks."""
        check_ident(model, "model name")
        check_channel(channel)
        key = pointer_key(model, channel)
        try:
            body = self.store.get(key)
        except StoreNotFoundError as exc:
            raise VersionCheckError(f"channel {channel} of {model} has no pointer in {self.store.uri} (no {key}); "
                                    f"publish one with 'edgeferry publish-pointer --channel {channel}'") from exc
        except EdgeferryError as exc:
            raise VersionCheckError(f"cannot read {key} in {self.store.uri}: {exc}") from exc
        try:
            try:
                sig: bytes | None = self.store.get(pointer_signature_key(model, channel))
            except StoreNotFoundError:
                sig = None
            pointer, _ = verify_pointer(body, sig, self.trusted, self.allow_unsigned, channel)
        except EdgeferryError as exc:
            raise VersionCheckError(f"channel {channel} of {model} fails verification: {exc}") from exc
        return self.check(model, pointer.version)
