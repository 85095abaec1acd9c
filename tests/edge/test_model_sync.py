"""ModelSync end to end over real stores: install, load with smoke test, activate, reject, roll back, prune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from edge.backends.base import Hardware
from edge.config import SyncConfig
from edge.errors import InstallError, PackageRejected
from edge.model_sync import ModelSync
from shared.errors import ConfigError
from shared.manifest import version_prefix
from shared.object_store import LocalStore, ObjectStore
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.edge.package_factory import KeyPair, make_package, new_keypair, publish_latest
from tests.edge.range_http_server import serve
from tests.edge.simple_ort import SimpleOrtBackend
from tests.fixtures.s3 import S3Endpoint

CPU = Hardware(cpu_features=frozenset({"sse2", "avx2", "avx512_vnni"}))


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _sync(tmp_path: Path, store: ObjectStore, key: KeyPair, **cfg: object) -> ModelSync:
    config = SyncConfig(cache_dir=tmp_path / "cache", backoff_s=0.01, download_attempts=2, **cfg)  # type: ignore[arg-type]
    return ModelSync(config, store, [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None)


def _deploy(sync: ModelSync, version: int) -> None:
    """What the agent does: install, load + smoke test, then activate."""
    installed = sync.install(version)
    model, _ = sync.load(installed)
    model.close()
    sync.activate(version)


def test_first_start_install_load_activate(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key)
    assert sync.recover() is None
    assert sync.check_latest() is None  # nothing published yet
    make_package(store, "digits", 1, key)
    assert sync.check_latest() == 1
    installed = sync.install(1)
    assert sync.current_version() is None  # not switched before the caller confirms
    model, variant = sync.load(installed)
    assert variant.precision == "fp32"
    assert model.run(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)
    sync.activate(1)
    assert sync.current_version() == 1
    assert sync.check_latest() is None
    again = _sync(tmp_path, store, key).recover()
    assert again is not None and again.version == 1 and again.manifest.name == "digits"


def test_update_keeps_previous_for_rollback(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    make_package(store, "digits", 2, key, bias=1.0)
    assert sync.check_latest() == 2
    _deploy(sync, 2)
    back = sync.rollback()
    assert back.version == 1
    assert sync.current_version() == 2  # rollback only picks; activate switches
    sync.activate(1)
    ptr = sync.cache.read_pointer()
    assert ptr is not None and (ptr.version, ptr.previous, ptr.highest) == (1, 2, 2)
    with pytest.raises(InstallError, match="no verified digits version older than v1"):
        sync.rollback()
    assert sync.check_latest() is None  # v2 was rolled back from: not re-installed automatically


def test_rollback_skips_a_corrupted_previous(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key, keep_versions=5)
    for v in (1, 2, 3):
        make_package(store, "digits", v, key)
        _deploy(sync, v)
    (sync.cache.version_dir(2) / "golden.npz").write_bytes(b"rot")
    assert sync.rollback().version == 1


def test_rejected_update_leaves_the_current_model_untouched(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    before = {p.name: p.read_bytes() for p in sync.cache.version_dir(1).iterdir()}
    make_package(store, "digits", 2, key, corrupt="model.fp32.onnx")
    assert sync.check_latest() == 2
    with pytest.raises(PackageRejected, match="sha256"):
        sync.install(2)
    assert sync.rejects == 1 and "sha256" in (sync.last_reject or "")
    assert sync.current_version() == 1
    assert sync.cache.installed_versions() == [1]
    assert list(sync.cache.staging_root.iterdir()) == []
    assert {p.name: p.read_bytes() for p in sync.cache.version_dir(1).iterdir()} == before
    assert sync.check_latest() is None  # not retried on every poll
    with pytest.raises(PackageRejected):
        sync.sync_version(2)  # an explicit request tries again
    assert sync.rejects == 2
    make_package(store, "digits", 3, key)
    assert sync.check_latest() == 3


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"unsigned": True}, "unsigned"),
        ({"key": "other"}, "not among the trusted keys"),
        ({"traversal": "../x.onnx"}, "unsafe file name"),
        ({"external_location": "../../../../etc/passwd"}, "climbs out"),
        ({"external_location": "weights.bin"}, "missing"),
    ],
)
def test_hostile_packages_are_counted_rejections(
    tmp_path: Path, store: LocalStore, key: KeyPair, kw: dict[str, object], why: str
) -> None:
    sync = _sync(tmp_path, store, key)
    signer = new_keypair() if kw.pop("key", None) else key
    extra = {"weights.bin": b"\0" * 2560} if kw.get("external_location") == "weights.bin" else None
    make_package(store, "digits", 1, signer, extra_files=extra, **kw)  # type: ignore[arg-type]
    with pytest.raises(PackageRejected, match=why):
        sync.install(1)
    assert sync.rejects == 1
    assert sync.cache.installed_versions() == []


def test_unsigned_accepted_only_when_allowed(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, unsigned=True)
    sync = _sync(tmp_path, store, key, allow_unsigned=True)
    _deploy(sync, 1)
    got = sync.recover()
    assert got is not None and got.version == 1
    strict = _sync(tmp_path, store, key)
    assert strict.recover() is None  # the same cache, re-verified without the exemption


def test_anti_rollback(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key)
    make_package(store, "digits", 1, key)
    make_package(store, "digits", 2, key)
    _deploy(sync, 2)
    publish_latest(store, "digits", 1, key)  # a replayed, older latest.json
    assert sync.check_latest() is None
    assert sync.pointer_rollbacks == 1
    with pytest.raises(PackageRejected, match="anti-rollback"):
        sync.install(1)
    with pytest.raises(PackageRejected, match="allow_downgrade"):
        sync.sync_version(1)  # a deploy command without allow_downgrade may not downgrade either
    assert sync.rejects == 2
    assert sync.cache.installed_versions() == [2]  # checked before anything was downloaded
    assert sync.sync_version(1, allow_downgrade=True).version == 1
    ptr = sync.cache.read_pointer()
    assert ptr is not None and (ptr.version, ptr.highest) == (2, 2)  # nothing persisted before activation
    sync.activate(1)
    ptr = sync.cache.read_pointer()
    assert ptr is not None and (ptr.version, ptr.highest) == (1, 2)
    publish_latest(store, "digits", 2, key)
    assert sync.check_latest() is None  # the version rolled back from is not re-installed by polling


def test_pinned_version_below_the_floor_needs_an_explicit_downgrade(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    sync = _sync(tmp_path, store, key)
    for v in (1, 2):
        make_package(store, "digits", v, key)
    _deploy(sync, 2)
    pinned = _sync(tmp_path, store, key, pinned_version=1)
    assert pinned.check_latest() == 1
    with pytest.raises(PackageRejected, match="anti-rollback"):
        pinned.install(1)  # a pin alone (set-config) cannot downgrade
    assert pinned.check_latest() is None  # refused once, not retried on every poll
    installed = pinned.sync_version(1, allow_downgrade=True)
    model, _ = pinned.load(installed)
    model.close()
    pinned.activate(1)
    assert pinned.current_version() == 1
    assert pinned.check_latest() is None


def test_pinned_version_is_served_on_a_fresh_device(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    for v in (1, 2):
        make_package(store, "digits", v, key)
    pinned = _sync(tmp_path, store, key, pinned_version=1)
    assert pinned.check_latest() == 1
    _deploy(pinned, 1)
    assert pinned.current_version() == 1


def test_keep_versions(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key, keep_versions=2)
    for v in range(1, 6):
        make_package(store, "digits", v, key)
        _deploy(sync, v)
    assert sync.cache.installed_versions() == [4, 5]


def test_failed_int8_smoke_test_falls_back_to_fp32(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"), sabotage={"int8": "labels"})
    sync = _sync(tmp_path, store, key)
    model, variant = sync.load(sync.install(1))
    assert variant.precision == "fp32"
    assert sync.variant_failures == 1 and sync.rejects == 0
    backend = sync.backend
    assert isinstance(backend, SimpleOrtBackend)
    assert [(f, m.closed) for f, m in backend.loaded] == [("model.int8.onnx", True), ("model.fp32.onnx", False)]
    model.close()


def test_model_failing_its_smoke_test_is_rejected(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    sync = _sync(tmp_path, store, key)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    make_package(store, "digits", 2, key, sabotage={"fp32": "nan"})
    installed = sync.install(2)
    with pytest.raises(PackageRejected, match="no variant passed: fp32: smoke test: outputs of 16/16"):
        sync.load(installed)
    assert sync.rejects == 1
    assert sync.current_version() == 1
    assert sync.check_latest() is None


def test_forced_variant_and_accuracy_floor(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"), accuracy={"fp32": 0.98, "int8": 0.90})
    auto = _sync(tmp_path, store, key)
    assert auto.load(auto.install(1))[1].precision == "fp32"
    assert any("int8" in n for n in auto.notes)
    forced = _sync(tmp_path, store, key, variant="int8", max_accuracy_drop=0.1)
    assert forced.load(forced.install(1))[1].precision == "int8"
    with pytest.raises(PackageRejected, match="fits this device"):
        _sync(tmp_path, store, key, variant="cuda-fp16").load(auto.install(1))


def test_benchmark_on_install_times_every_candidate(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    sync = _sync(tmp_path, store, key, benchmark_on_install=True)
    model, variant = sync.load(sync.install(1))
    backend = sync.backend
    assert isinstance(backend, SimpleOrtBackend)
    assert sorted(f for f, _ in backend.loaded) == ["model.fp32.onnx", "model.int8.onnx"]
    assert [m.closed for f, m in backend.loaded if f == variant.file] == [False]
    assert [m.closed for f, m in backend.loaded if f != variant.file] == [True]
    model.close()


def test_s3_store_from_config(tmp_path: Path, s3: S3Endpoint, key: KeyPair) -> None:
    pem = tmp_path / "trusted.pem"
    pem.write_bytes(
        key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cfg = SyncConfig(
        store=StoreConfig(uri=f"s3://{s3.bucket}/edge", endpoint_url=s3.url),
        cache_dir=tmp_path / "cache",
        trusted_keys=[pem],
    )
    sync = ModelSync.from_config(cfg, SimpleOrtBackend(), CPU)
    make_package(sync.store, "digits", 1, key)
    assert sync.check_latest() == 1
    _deploy(sync, 1)
    assert sync.current_version() == 1


def test_http_store(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    with serve(store.root) as (url, state):
        state.cut_after, state.cut_key = 300, "golden.npz"
        cfg = SyncConfig(store=StoreConfig(uri=url), cache_dir=tmp_path / "cache", backoff_s=0.01)
        sync = ModelSync(cfg, open_store(cfg.store), [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None)
        assert sync.check_latest() == 1
        _deploy(sync, 1)
    assert sync.current_version() == 1
    assert (sync.cache.version_dir(1) / "golden.npz").read_bytes() == store.get(
        version_prefix("digits", 1) + "golden.npz"
    )


def test_reduced_precision_agreement_comes_from_config(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"), sabotage={"int8": "labels"})
    lenient = _sync(tmp_path, store, key, smoke_min_agreement=0.0)
    model, variant = lenient.load(lenient.install(1))
    assert variant.precision == "int8"
    model.close()


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_cache_dir_that_is_not_a_usable_directory_is_refused_at_start(
    tmp_path: Path, store: LocalStore, key: KeyPair, where: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = SyncConfig(cache_dir=tmp_path / where, backoff_s=0.01)
    with pytest.raises(ConfigError, match=r"^sync\.cache_dir .*a-file.* is not a (writable )?directory") as info:
        ModelSync(config, store, [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None)
    assert "\n" not in str(info.value)
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_a_missing_cache_dir_is_created_at_start(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    config = SyncConfig(cache_dir=tmp_path / "new" / "cache", backoff_s=0.01)
    ModelSync(config, store, [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None)
    assert (tmp_path / "new" / "cache").is_dir()
