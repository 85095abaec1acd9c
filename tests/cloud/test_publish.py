"""Publishing: versions only increase, readers never see a half-published version, tampering is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloud.errors import PublishError
from cloud.publish import existing_versions, next_version, publish, read_latest, verify_published
from shared.errors import IntegrityError, SignatureError, StoreError
from shared.integrity import sha256_file
from shared.manifest import Golden, Manifest, Variant
from shared.object_store import LocalStore, MemoryStore, ObjectStore
from shared.signing import generate_keypair, load_private_key, load_public_key
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.fixtures.s3 import S3Endpoint
from tests.shared.manifest_factory import make_manifest


def _package(tmp: Path, version: int) -> tuple[Path, Manifest]:
    d = tmp / f"pkg{version}"
    d.mkdir(exist_ok=True)
    (d / "model.fp32.onnx").write_bytes(os.urandom(2048))
    (d / "golden.npz").write_bytes(os.urandom(300))
    base = make_manifest(version=version)
    variant = base.variants[0].model_copy(
        update={"sha256": sha256_file(d / "model.fp32.onnx"), "bytes": 2048}
    )
    golden = Golden(file="golden.npz", sha256=sha256_file(d / "golden.npz"), bytes=300, count=4)
    return d, base.model_copy(update={"variants": [Variant.model_validate(variant.model_dump())], "golden": golden})


@pytest.fixture
def key(tmp_path: Path):  # type: ignore[no-untyped-def]
    pair = generate_keypair(tmp_path / "keys" / "k.key")
    return load_private_key(pair.private), load_public_key(pair.public)


class RecordingStore(MemoryStore):
    """Records the order of writes and can fail the Nth one, like a crash mid-publish."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.fail_at = fail_at

    def put(self, key: str, data: bytes) -> None:
        if self.fail_at is not None and len(self.writes) == self.fail_at:
            raise StoreError(f"simulated outage writing {key}")
        self.writes.append(key)
        super().put(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self.put(key, Path(path).read_bytes())


def test_upload_order_files_then_signature_then_manifest_then_latest(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = RecordingStore()
    d, m = _package(tmp_path, 1)
    publish(store, d, m, key[0])
    names = [w.rsplit("/", 1)[1] for w in store.writes]
    assert names == ["model.fp32.onnx", "golden.npz", "manifest.json.sig", "manifest.json", "latest.json"]


@pytest.mark.parametrize("fail_at", [0, 1, 2, 3, 4])
def test_a_crash_at_any_write_leaves_no_visible_version(tmp_path: Path, key, fail_at: int) -> None:  # type: ignore[no-untyped-def]
    store = RecordingStore(fail_at=fail_at)
    d, m = _package(tmp_path, 1)
    with pytest.raises(StoreError):
        publish(store, d, m, key[0])
    assert read_latest(store, m.name) is None
    # A retry never reuses a number that may have partial objects under it.
    assert next_version(store, m.name) == (2 if store.writes else 1)


def test_versions_only_increase(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = MemoryStore()
    for v in (1, 2):
        d, m = _package(tmp_path, v)
        publish(store, d, m, key[0])
    assert existing_versions(store, "digits") == [1, 2] and next_version(store, "digits") == 3
    d, m = _package(tmp_path, 2)
    with pytest.raises(PublishError, match="already exists"):
        publish(store, d, m, key[0])


def test_stale_work_dir_is_refused_before_upload(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = RecordingStore()
    d, m = _package(tmp_path, 1)
    (d / "model.fp32.onnx").write_bytes(b"changed")
    with pytest.raises(PublishError, match="does not match"):
        publish(store, d, m, key[0])
    assert store.writes == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_read_back_verifies_and_one_flipped_byte_fails(
    tmp_path: Path, key, backend: str, request: pytest.FixtureRequest  # type: ignore[no-untyped-def]
) -> None:
    store: ObjectStore
    if backend == "local":
        store = LocalStore(tmp_path / "store")
    else:
        s3: S3Endpoint = request.getfixturevalue("s3")
        store = open_store(StoreConfig(uri=f"s3://{s3.bucket}/edgeferry", endpoint_url=s3.url))
    d, m = _package(tmp_path, 1)
    published = publish(store, d, m, key[0])
    assert verify_published(store, "digits", None, [key[1]]).version == published.version == 1

    blob = bytearray(store.get("models/digits/1/model.fp32.onnx"))
    blob[100] ^= 0xFF
    store.put("models/digits/1/model.fp32.onnx", bytes(blob))
    with pytest.raises(IntegrityError, match="sha256"):
        verify_published(store, "digits", 1, [key[1]])

    body = bytearray(store.get("models/digits/1/manifest.json"))
    body[10] ^= 0x01
    store.put("models/digits/1/manifest.json", bytes(body))
    with pytest.raises(SignatureError):
        verify_published(store, "digits", 1, [key[1]])
