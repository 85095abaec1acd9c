"""Both store back-ends behave the same: local directory and S3 over HTTP (moto server on loopback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import StoreError, StoreNotFoundError
from shared.object_store import LocalStore, MemoryStore, ObjectStore
from shared.s3_store import S3Store
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.fixtures.ports import free_port
from tests.fixtures.s3 import S3Endpoint


@pytest.fixture(params=["local", "s3", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(StoreConfig(uri=str(tmp_path / "store")))
    if request.param == "memory":
        return MemoryStore()
    s3: S3Endpoint = request.getfixturevalue("s3")
    return open_store(StoreConfig(uri=f"s3://{s3.bucket}/fleet-a", endpoint_url=s3.url))


def test_put_get_list_exists(store: ObjectStore, tmp_path: Path) -> None:
    store.put("models/m/1/a.bin", b"hello")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3000))
    store.put_file("models/m/1/b.bin", src)
    assert store.get("models/m/1/a.bin") == b"hello"
    assert store.exists("models/m/1/b.bin") and not store.exists("models/m/1/c.bin")
    assert store.list("models/m/") == ["models/m/1/a.bin", "models/m/1/b.bin"]
    assert store.list("models/other/") == []
    dest = tmp_path / "out.bin"
    store.download("models/m/1/b.bin", dest, 3000)
    assert dest.read_bytes() == src.read_bytes()


def test_download_resumes_a_partial_file(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    store.put("k/obj", data)
    dest = tmp_path / "part"
    dest.write_bytes(data[:4321])
    store.download("k/obj", dest, len(data))
    assert dest.read_bytes() == data


def test_missing_object_and_bad_keys(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="not found"):
        store.get("models/none/latest.json")
    with pytest.raises(StoreNotFoundError):
        store.download("models/none/x", tmp_path / "x")
    for bad in ("../etc/passwd", "/abs", "a//b", "a/../b", ""):
        with pytest.raises(StoreError, match="invalid object key"):
            store.get(bad)


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a/b", b"1")
    store.put("a/b", b"2")
    assert store.get("a/b") == b"2"
    assert [p.name for p in (tmp_path / "s" / "a").iterdir()] == ["b"]


def test_local_store_under_a_file_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="not writable"):
        LocalStore(blocker / "store").put("a", b"1")


def test_unreachable_s3_endpoint_fails_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    port = free_port()
    store = open_store(
        StoreConfig(uri="s3://b/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout_s=0.5)
    )
    with pytest.raises(StoreError, match="unreachable"):
        store.get("models/x/latest.json")


def test_missing_bucket_is_named(s3: S3Endpoint) -> None:
    store = S3Store("no-such-bucket", "", StoreConfig(endpoint_url=s3.url))
    with pytest.raises(StoreError, match="no-such-bucket"):
        store.put("a", b"1")


def test_unsupported_uri() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        open_store(StoreConfig(uri="gs://bucket"))
    with pytest.raises(StoreError, match="bucket"):
        open_store(StoreConfig(uri="s3://"))


def test_wrong_credentials_are_reported_as_such(s3_auth_server: str) -> None:
    store = open_store(
        StoreConfig(
            uri="s3://models/prefix",
            endpoint_url=s3_auth_server,
            access_key_id="wrong",
            secret_access_key="wrong",  # type: ignore[arg-type]
            max_attempts=2,
        )
    )
    with pytest.raises(StoreError, match="check the S3 credentials"):
        store.put("models/x/1/a", b"1")
    with pytest.raises(StoreError, match="check the S3 credentials"):
        store.list("models/")
