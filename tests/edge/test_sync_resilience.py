"""ModelSync against a full disk and failing store objects: refused before download, counted, retried with backoff."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.backends.base import Hardware
from edge.config import SyncConfig
from edge.errors import InsufficientSpace
from edge.model_sync import ModelSync
from shared.errors import StoreError, StoreNotFoundError
from shared.manifest import version_prefix
from shared.object_store import LocalStore
from tests.edge.package_factory import GOLDEN_FILE, KeyPair, make_package, new_keypair
from tests.edge.simple_ort import SimpleOrtBackend

CPU = Hardware(cpu_features=frozenset({"sse2", "avx2"}))
POLL_S = 30.0


class SpyStore(LocalStore):
    """A LocalStore that records which payload objects were downloaded."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.downloads: list[str] = []

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """Record, then download."""
        self.downloads.append(key)
        super().download(key, dest, size)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> SpyStore:
    return SpyStore(tmp_path / "store")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs for the cache (the tests run as root, as CI does)."""
    mnt = tmp_path / "cache"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _sync(cache: Path, store: LocalStore, key: KeyPair, clock: Clock, **cfg: object) -> ModelSync:
    config = SyncConfig(
        cache_dir=cache, backoff_s=0.01, download_attempts=2, poll_interval_s=POLL_S, **cfg  # type: ignore[arg-type]
    )
    return ModelSync(config, store, [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None, clock=clock)


def _deploy(sync: ModelSync, version: int) -> None:
    model, _ = sync.load(sync.install(version))
    model.close()
    sync.activate(version)


def test_package_larger_than_free_space_is_refused_before_download(
    small_fs: Path, store: SpyStore, key: KeyPair
) -> None:
    clock = Clock()
    sync = _sync(small_fs, store, key, clock, min_free_mb=0)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    make_package(store, "digits", 2, key, input_hw=(128, 128))  # about 1.7 MB of payload for a 1 MiB disk
    store.downloads.clear()
    assert sync.check_latest() == 2
    with pytest.raises(InsufficientSpace, match=r"needs \d+ more bytes .* but only \d+ are free"):
        sync.install(2)
    assert store.downloads == []  # not one payload byte fetched
    assert sync.metrics()["package_rejects"] == 1
    assert sync.current_version() == 1 and sync.cache.installed_versions() == [1]
    assert list(sync.cache.staging_root.iterdir()) == []
    assert sync.check_latest() is None  # backing off, not re-fetched on the next poll
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
    clock.t += POLL_S
    assert sync.check_latest() == 2  # space is back: tried again after the backoff
    assert sync.install(2).version == 2
    assert 2 not in sync.failures


def test_the_free_space_margin_counts(tmp_path: Path, store: SpyStore, key: KeyPair) -> None:
    sync = _sync(tmp_path / "cache", store, key, Clock(), min_free_mb=1e6)  # a terabyte kept spare
    make_package(store, "digits", 1, key)
    with pytest.raises(InsufficientSpace, match="kept spare"):
        sync.install(1)
    assert store.downloads == []


def _break(store: LocalStore, tmp_path: Path, how: str) -> Path:
    path = store.root / version_prefix("digits", 2) / GOLDEN_FILE
    good = path.read_bytes()
    path.unlink()
    if how == "short":
        path.write_bytes(good[:100])
    elif how == "symlink":
        elsewhere = tmp_path / "elsewhere.npz"
        elsewhere.write_bytes(good)
        path.symlink_to(elsewhere)
    elif how == "fifo":
        os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("how", "error", "why"),
    [
        ("missing", StoreNotFoundError, "is not in"),
        ("short", StoreError, "got 100 of"),
        ("symlink", StoreError, "is a symlink"),
        ("fifo", StoreError, "not a regular file"),
    ],
)
def test_a_failing_store_object_is_counted_and_retried_with_backoff(
    tmp_path: Path, store: SpyStore, key: KeyPair, how: str, error: type[Exception], why: str
) -> None:
    clock = Clock()
    sync = _sync(tmp_path / "cache", store, key, clock)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    make_package(store, "digits", 2, key, bias=1.0)
    good = (store.root / version_prefix("digits", 2) / GOLDEN_FILE).read_bytes()
    path = _break(store, tmp_path, how)

    assert sync.check_latest() == 2
    with pytest.raises(error, match=why):
        sync.install(2)
    assert sync.metrics()["store_errors"] == 1 and sync.rejects == 0
    assert sync.current_version() == 1
    assert sync.check_latest() is None  # the next poll does not fetch it again
    clock.t += POLL_S
    assert sync.check_latest() == 2  # one poll interval later it does
    with pytest.raises(error):
        sync.install(2)
    assert sync.failures[2].count == 2
    clock.t += POLL_S
    assert sync.check_latest() is None  # the wait doubled
    with pytest.raises(error):
        sync.sync_version(2)  # an explicit deploy still tries at once
    assert sync.metrics()["store_errors"] == 3

    path.unlink(missing_ok=True)
    path.write_bytes(good)
    assert sync.sync_version(2).version == 2
    assert 2 not in sync.failures


def test_backoff_is_capped(tmp_path: Path, store: SpyStore, key: KeyPair) -> None:
    clock = Clock()
    sync = _sync(tmp_path / "cache", store, key, clock, retry_max_s=100)
    make_package(store, "digits", 1, key)
    (store.root / version_prefix("digits", 1) / GOLDEN_FILE).unlink()
    for _ in range(6):
        with pytest.raises(StoreNotFoundError):
            sync.install(1)
    assert sync.failures[1].next_at - clock.t == 100
