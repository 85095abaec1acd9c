"""Downloads stop at the declared size on every back-end; the local store serves only regular files, 0644/0755."""

from __future__ import annotations

import ast
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from shared.errors import IntegrityError, StoreError
from shared.object_store import CHUNK, LocalStore, MemoryStore, ObjectStore, copy_capped
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.edge.range_http_server import ServerState, serve
from tests.fixtures.s3 import S3Endpoint

KEY = "models/digits/1/model.fp32.onnx"
DECLARED = 1024
ACTUAL = 8 << 20  # 8 MiB behind a 1 KiB declaration


@contextmanager
def largest_size(path: Path) -> Iterator[list[int]]:
    """Sample path's size on another thread while the block runs; yields [largest size seen]."""
    seen = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with suppress(FileNotFoundError):
                seen[0] = max(seen[0], path.stat().st_size)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(timeout=5)
        if path.exists():
            seen[0] = max(seen[0], path.stat().st_size)


def _assert_stopped(store: ObjectStore, dest: Path) -> None:
    with largest_size(dest) as seen, pytest.raises(IntegrityError) as info:
        store.download(KEY, dest, DECLARED)
    msg = str(info.value)
    assert KEY in msg and f"{DECLARED} are declared" in msg
    assert seen[0] <= DECLARED
    assert not dest.exists()


@pytest.fixture
def big() -> bytes:
    return os.urandom(ACTUAL)


def test_local_store_refuses_an_oversized_object(tmp_path: Path, big: bytes) -> None:
    store = LocalStore(tmp_path / "store")
    store.put(KEY, big)
    _assert_stopped(store, tmp_path / "dest")


def test_memory_store_refuses_an_oversized_object(tmp_path: Path, big: bytes) -> None:
    store = MemoryStore()
    store.put(KEY, big)
    _assert_stopped(store, tmp_path / "dest")


def test_s3_store_refuses_an_oversized_object(tmp_path: Path, s3: S3Endpoint, big: bytes) -> None:
    store = open_store(StoreConfig(uri=f"s3://{s3.bucket}/edge", endpoint_url=s3.url))
    store.put(KEY, big)
    dest = tmp_path / "dest"
    _assert_stopped(store, dest)
    dest.write_bytes(big[:100])  # a partial file from an earlier attempt: the ranged GET is refused as well
    _assert_stopped(store, dest)


@pytest.mark.parametrize("omit_length", [False, True], ids=["content-length", "no-length"])
def test_http_store_stops_reading_past_the_declared_size(tmp_path: Path, big: bytes, omit_length: bool) -> None:
    root = tmp_path / "store"
    LocalStore(root).put(KEY, big)
    with serve(root) as (url, state):
        state.omit_length = omit_length
        store = open_store(StoreConfig(uri=url))
        _assert_stopped(store, tmp_path / "dest")
        if omit_length:
            _wait_sent(state)
            assert DECLARED < state.sent < ACTUAL  # the server pushed more; the client hung up and kept none of it


def _wait_sent(state: ServerState) -> None:
    for _ in range(200):
        if state.sent > DECLARED:
            return
        threading.Event().wait(0.01)


def test_http_resume_still_works_below_the_cap(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    root = tmp_path / "store"
    LocalStore(root).put(KEY, data)
    dest = tmp_path / "dest"
    dest.write_bytes(data[:12_345])
    with serve(root) as (url, state):
        open_store(StoreConfig(uri=url)).download(KEY, dest, len(data))
    assert dest.read_bytes() == data
    assert state.requests == [(KEY, "bytes=12345-")]


def test_copy_capped_reads_at_most_one_byte_past_the_size(tmp_path: Path) -> None:
    handed_out = 0

    def endless(n: int) -> bytes:
        nonlocal handed_out
        handed_out += n
        return b"x" * n

    with pytest.raises(IntegrityError, match="at least 1025 bytes but 1024 are declared"):
        copy_capped(endless, tmp_path / "d", "k/x", "test://", size=1024)
    assert handed_out <= 1025 < CHUNK
    assert not (tmp_path / "d").exists()


def test_local_store_publishes_0644_files_and_0755_dirs_under_umask_077(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    old = os.umask(0o077)
    try:
        store = LocalStore(tmp_path / "store")
        store.put("models/m/latest.json", b"{}")
        store.put_file("models/m/1/model.onnx", src)
    finally:
        os.umask(old)
    root = tmp_path / "store"
    for f in ("models/m/latest.json", "models/m/1/model.onnx"):
        assert stat.S_IMODE((root / f).stat().st_mode) == 0o644, f
    for d in (root, root / "models", root / "models/m", root / "models/m/1"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d


def test_local_store_serves_regular_files_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("models/m/1/real.bin", b"real")
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    (tmp_path / "store/models/m/1/link.bin").symlink_to(outside)
    os.mkfifo(tmp_path / "store/models/m/1/fifo.bin")
    with pytest.raises(StoreError, match="is a symlink"):
        store.get("models/m/1/link.bin")
    with pytest.raises(StoreError, match="is a symlink"):
        store.download("models/m/1/link.bin", tmp_path / "d", 6)
    with pytest.raises(StoreError, match="not a regular file"):
        store.download("models/m/1/fifo.bin", tmp_path / "d", 6)  # a FIFO would block a reader forever
    assert not store.exists("models/m/1/link.bin")
    assert store.get("models/m/1/real.bin") == b"real"


def test_no_import_cycle_between_the_store_modules() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared"

    def imports(name: str) -> set[str]:
        tree = ast.parse((shared / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert not {"shared.s3_store", "shared.http_store", "shared.store_open"} & imports("object_store")
    for backend in ("s3_store", "http_store"):
        assert "shared.store_open" not in imports(backend)
