"""The local cache: atomic install, pointer, pruning and recovery from whatever a crash or bit rot left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.model_cache import ModelCache, Pointer
from edge.package_verify import verify_package
from shared.manifest import Manifest
from tests.edge.package_factory import GOLDEN_FILE, KeyPair, build_package, new_keypair, write_package_dir

MODEL = "model.fp32.onnx"


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache", "digits")


def _verifier(key: KeyPair):  # type: ignore[no-untyped-def]
    def verify(version: int, path: Path) -> Manifest:
        return verify_package(path, "digits", version, [key.public], allow_unsigned=False)

    return verify


def _install(cache: ModelCache, key: KeyPair, version: int) -> Path:
    manifest, files = build_package("digits", version)
    staged = write_package_dir(cache.new_staging(version), manifest, files, key.private)
    return cache.install(staged, version)


def _activate(cache: ModelCache, version: int, previous: int | None = None) -> None:
    cache.write_pointer(Pointer(version=version, previous=previous, highest=version))


def test_install_renames_staging_into_versions(cache: ModelCache, key: KeyPair) -> None:
    path = _install(cache, key, 1)
    assert path == cache.model_dir / "versions" / "1"
    assert (path / MODEL).is_file()
    assert list(cache.staging_root.iterdir()) == []
    assert cache.installed_versions() == [1]
    assert cache.read_pointer() is None  # installing never switches


def test_install_replaces_a_damaged_copy(cache: ModelCache, key: KeyPair) -> None:
    path = _install(cache, key, 1)
    (path / MODEL).write_bytes(b"rot")
    (path / "junk").write_bytes(b"x")
    _install(cache, key, 1)
    verify = _verifier(key)
    assert verify(1, path).version == 1
    assert not (path / "junk").exists()
    assert list(cache.staging_root.iterdir()) == []


def test_pointer_round_trip_and_no_temp_left(cache: ModelCache) -> None:
    cache.write_pointer(Pointer(version=3, previous=2, highest=4))
    assert cache.read_pointer() == Pointer(version=3, previous=2, highest=4)
    assert [p.name for p in cache.model_dir.iterdir()] == ["current.json"]


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"version": 0}', b'{"previous": 1}'])
def test_damaged_pointer_reads_as_none(cache: ModelCache, content: bytes) -> None:
    cache.model_dir.mkdir(parents=True)
    cache.pointer_path.write_bytes(content)
    assert cache.read_pointer() is None


def test_prune_keeps_newest_and_never_current_or_previous(cache: ModelCache, key: KeyPair) -> None:
    for v in range(1, 7):
        _install(cache, key, v)
    _activate(cache, 2, previous=1)  # e.g. after an explicit rollback
    assert cache.prune(keep=3) == [3]
    assert cache.installed_versions() == [1, 2, 4, 5, 6]
    _activate(cache, 6, previous=5)
    assert sorted(cache.prune(keep=2)) == [1, 2, 4]
    assert cache.installed_versions() == [5, 6]
    assert list(cache.staging_root.iterdir()) == []


def test_recover_cleans_staging_and_stray_pointer_temps(cache: ModelCache, key: KeyPair) -> None:
    _install(cache, key, 1)
    _activate(cache, 1)
    half = cache.new_staging(2)
    (half / MODEL).write_bytes(b"partial")
    (cache.model_dir / ".current.json.abc123.tmp").write_bytes(b'{"version": 2}')
    got = cache.recover(_verifier(key))
    assert got is not None and got.version == 1
    assert list(cache.staging_root.iterdir()) == []
    assert [p.name for p in cache.model_dir.iterdir() if p.name.startswith(".")] == []


def test_recover_falls_back_to_previous_when_current_is_corrupted(cache: ModelCache, key: KeyPair) -> None:
    for v in (1, 2, 3):
        _install(cache, key, v)
    _activate(cache, 2, previous=1)
    (cache.version_dir(2) / MODEL).write_bytes(b"bit rot")
    got = cache.recover(_verifier(key))
    assert got is not None and got.version == 1  # served before, unlike the never-activated v3
    ptr = cache.read_pointer()
    assert ptr is not None and ptr.version == 1 and ptr.highest == 2


def test_recover_without_previous_takes_newest_that_verifies(cache: ModelCache, key: KeyPair) -> None:
    for v in (1, 2, 3):
        _install(cache, key, v)
    _activate(cache, 3)
    (cache.version_dir(3) / GOLDEN_FILE).unlink()
    (cache.version_dir(2) / "manifest.json.sig").write_bytes(b"{}")
    got = cache.recover(_verifier(key))
    assert got is not None and got.version == 1
    assert cache.read_pointer() == Pointer(version=1, previous=None, highest=3)


def test_recover_refuses_a_planted_symlink(cache: ModelCache, key: KeyPair, tmp_path: Path) -> None:
    _install(cache, key, 1)
    _install(cache, key, 2)
    _activate(cache, 2, previous=1)
    (tmp_path / "evil").write_bytes(b"x")
    os.symlink(tmp_path / "evil", cache.version_dir(2) / "extra.onnx")
    got = cache.recover(_verifier(key))
    assert got is not None and got.version == 1


def test_recover_with_no_pointer_picks_newest_installed(cache: ModelCache, key: KeyPair) -> None:
    _install(cache, key, 1)
    _install(cache, key, 2)
    got = cache.recover(_verifier(key))
    assert got is not None and got.version == 2
    assert cache.read_pointer() == Pointer(version=2, previous=1, highest=2)


def test_recover_with_nothing_verified_returns_none(cache: ModelCache, key: KeyPair) -> None:
    assert cache.recover(_verifier(key)) is None
    _install(cache, key, 1)
    _activate(cache, 1)
    assert cache.recover(_verifier(new_keypair())) is None  # signed by a key no longer trusted
    ptr = cache.read_pointer()
    assert ptr is not None and ptr.version == 1  # left alone for the operator to see


def test_unrelated_dirs_under_versions_are_ignored(cache: ModelCache, key: KeyPair) -> None:
    _install(cache, key, 1)
    (cache.versions_dir / "tmp").mkdir()
    (cache.versions_dir / "01").mkdir()
    assert cache.installed_versions() == [1]
