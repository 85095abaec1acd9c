"""Publishing: versions only increase, readers never see a half-published version, tampering is caught."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cloud.errors import PublishError
from cloud.publish import (
    existing_versions,
    next_version,
    publish,
    publish_pointer,
    read_latest,
    verify_published,
)
from shared.errors import IntegrityError, ManifestError, SignatureError, StoreError
from shared.integrity import sha256_file
from shared.manifest import Golden, Manifest, Variant, latest_key, latest_signature_key
from shared.object_store import LocalStore, MemoryStore, ObjectStore
from shared.pointer import verify_pointer
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
    assert names == [
        "model.fp32.onnx", "golden.npz", "manifest.json.sig", "manifest.json", "latest.json.sig", "latest.json"
    ]


@pytest.mark.parametrize("fail_at", [0, 1, 2, 3, 4, 5])
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


def test_latest_json_is_signed_and_expires_after_the_configured_ttl(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    d, m = _package(tmp_path, 1)
    publish(store, d, m, key[0], pointer_ttl=timedelta(days=7))
    body = store.get(latest_key(m.name))
    latest, kid = verify_pointer(body, store.get(latest_signature_key(m.name)), [key[1]], allow_unsigned=False)
    assert kid and latest.version == 1 and latest.expires_at is not None
    assert latest.expires_at - latest.published_at == timedelta(days=7)
    assert verify_published(store, m.name, None, [key[1]]).version == 1


def test_publish_pointer_re_signs_with_a_fresh_expiry_without_republishing(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    d, m = _package(tmp_path, 1)
    publish(store, d, m, key[0], pointer_ttl=timedelta(days=1))
    before = read_latest(store, m.name)
    files = sorted(store.list("models/"))
    fresh = publish_pointer(store, m.name, key[0], timedelta(days=90))
    assert before is not None and fresh.expires_at is not None and before.expires_at is not None
    assert (fresh.version, fresh.manifest_sha256, fresh.published_at) == (
        before.version, before.manifest_sha256, before.published_at
    )
    assert fresh.expires_at - before.expires_at > timedelta(days=88)
    assert sorted(store.list("models/")) == files  # nothing but the pointer and its signature rewritten
    verify_pointer(store.get(latest_key(m.name)), store.get(latest_signature_key(m.name)), [key[1]], False)
    other = generate_keypair(tmp_path / "other" / "k.key")
    with pytest.raises(PublishError, match="not signed by this key"):
        publish_pointer(store, m.name, load_private_key(other.private))
    with pytest.raises(PublishError, match=r"no latest\.json"):
        publish_pointer(store, "nothing", key[0])


def test_cli_publish_pointer(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys" / "k.key")
    store = LocalStore(tmp_path / "store")
    d, m = _package(tmp_path, 1)
    publish(store, d, m, load_private_key(pair.private), pointer_ttl=timedelta(days=1))
    cli = [sys.executable, "-m", "edgeferry.cli", "publish-pointer", "--store", str(store.root), "--name", m.name]
    ok = subprocess.run([*cli, "--signing-key", str(pair.private), "--ttl-days", "45"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert f"{m.name} latest.json -> v1, signed, expires" in ok.stdout
    latest = read_latest(store, m.name)
    assert latest is not None and latest.expires_at is not None
    assert latest.expires_at - latest.published_at > timedelta(days=44)
    bad = subprocess.run([*cli, "--signing-key", str(tmp_path / "missing.key")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr


def test_publish_pointer_moves_a_channel_that_only_its_followers_read(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    for v in (1, 2):
        publish(store, *_package(tmp_path, v), key[0])
    publish_pointer(store, "digits", key[0], channel="stable", version=1)  # hold stable back at v1
    with pytest.raises(PublishError, match=r"no channels/canary\.json .*--model-version"):
        publish_pointer(store, "digits", key[0], channel="canary")
    canary = publish_pointer(store, "digits", key[0], timedelta(days=3), channel="canary", version=2)
    body = store.get("models/digits/channels/canary.json")
    seen, _ = verify_pointer(body, store.get("models/digits/channels/canary.json.sig"), [key[1]], False, "canary")
    assert seen == canary and seen.version == 2
    assert read_latest(store, "digits").version == 1  # type: ignore[union-attr]
    # The channel is inside the signed bytes: read as another channel (or as latest.json) it is refused.
    with pytest.raises(ManifestError, match="signed for channel 'canary'"):
        verify_pointer(body, store.get("models/digits/channels/canary.json.sig"), [key[1]], False, "beta")
    with pytest.raises(ManifestError):
        verify_pointer(body, store.get("models/digits/channels/canary.json.sig"), [key[1]], False)
    resigned = publish_pointer(store, "digits", key[0], timedelta(days=60), channel="canary")
    assert resigned.version == 2 and resigned.expires_at > canary.expires_at  # type: ignore[operator]
    with pytest.raises(PublishError, match="v9 is not published"):
        publish_pointer(store, "digits", key[0], channel="canary", version=9)
    with pytest.raises(PublishError, match="channel name"):
        publish_pointer(store, "digits", key[0], channel="../x", version=2)


def test_cli_publish_pointer_to_a_channel(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys" / "k.key")
    store = LocalStore(tmp_path / "store")
    publish(store, *_package(tmp_path, 1), load_private_key(pair.private))
    cli = [sys.executable, "-m", "edgeferry.cli", "publish-pointer", "--store", str(store.root), "--name", "digits",
           "--signing-key", str(pair.private), "--channel", "canary"]
    ok = subprocess.run([*cli, "--model-version", "1"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "digits channels/canary.json -> v1, signed, expires" in ok.stdout
    bad = subprocess.run([*cli, "--model-version", "7"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "v7 is not published" in bad.stderr
