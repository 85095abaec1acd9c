"""The device trusts latest.json only when signed, fresh, naming the manifest it then fetches, and not moving back."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge.backends.base import Hardware
from edge.config import SyncConfig
from edge.errors import PackageRejected
from edge.model_sync import ModelSync
from shared.integrity import sha256_bytes
from shared.manifest import Latest, latest_key, latest_signature_key, utcnow
from shared.object_store import LocalStore
from shared.pointer import ChannelPointer, pointer_key, pointer_signature_key, sign_pointer
from shared.signing import sign
from tests.edge.package_factory import KeyPair, make_package, new_keypair, publish_latest
from tests.edge.simple_ort import SimpleOrtBackend

CPU = Hardware(cpu_features=frozenset({"sse2", "avx2"}))
POINTER = latest_key("digits")


class WallClock:
    """utcnow, shifted by hand."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _sync(tmp_path: Path, store: LocalStore, key: KeyPair, now: WallClock | None = None, **cfg: object) -> ModelSync:
    config = SyncConfig(cache_dir=tmp_path / "cache", backoff_s=0.01, download_attempts=2, **cfg)  # type: ignore[arg-type]
    return ModelSync(
        config, store, [key.public], SimpleOrtBackend(), CPU, sleep=lambda s: None, now=now or WallClock()
    )


def _deploy(sync: ModelSync, version: int) -> None:
    model, _ = sync.load(sync.install(version))
    model.close()
    sync.activate(version)


def test_unsigned_pointer_is_refused_once_and_counted(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    publish_latest(store, "digits", 1, None)  # an old publisher or anyone with write access to the store
    store.root.joinpath(latest_signature_key("digits")).unlink(missing_ok=True)
    sync = _sync(tmp_path, store, key)
    for _ in range(3):
        assert sync.check_latest() is None
    assert sync.metrics()["pointer_rejects"] == 1  # once per change, not once per poll
    lenient = _sync(tmp_path, store, key, allow_unsigned=True)
    assert lenient.check_latest() == 1


@pytest.mark.parametrize("attack", ["foreign-key", "edited", "no-expiry"])
def test_forged_pointer_is_refused(tmp_path: Path, store: LocalStore, key: KeyPair, attack: str) -> None:
    make_package(store, "digits", 1, key)
    make_package(store, "digits", 2, key)
    publish_latest(store, "digits", 1, key)
    pointer = Latest.model_validate_json(store.get(POINTER))
    if attack == "foreign-key":
        publish_latest(store, "digits", 2, new_keypair())
    elif attack == "edited":
        moved = pointer.model_copy(update={"version": 2})
        store.put(POINTER, moved.to_bytes())  # the old signature stays beside it
    else:
        bare = pointer.model_copy(update={"expires_at": None, "version": 2})
        store.put(latest_signature_key("digits"), sign(bare.to_bytes(), key.private))
        store.put(POINTER, bare.to_bytes())
    sync = _sync(tmp_path, store, key)
    assert sync.check_latest() is None
    assert sync.pointer_rejects == 1


def test_manifest_must_be_the_one_the_pointer_names(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    publish_latest(store, "digits", 1, key, manifest_sha256="0" * 64)
    sync = _sync(tmp_path, store, key)
    assert sync.check_latest() == 1
    with pytest.raises(PackageRejected, match=r"latest\.json names 0000000000000000"):
        sync.install(1)
    assert sync.rejects == 1 and sync.cache.installed_versions() == []


def test_expired_pointer_is_logged_once_counted_and_ignored(
    tmp_path: Path, store: LocalStore, key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    now = WallClock()
    sync = _sync(tmp_path, store, key, now)
    make_package(store, "digits", 1, key)
    _deploy(sync, 1)
    make_package(store, "digits", 2, key)  # its pointer is valid for 30 days
    now.shift = timedelta(days=31)
    with caplog.at_level(logging.WARNING, logger="edge.model_sync"):
        for _ in range(3):
            assert sync.check_latest() is None
    assert sync.metrics()["pointer_expired"] == 1
    assert sum("expired at" in r.getMessage() for r in caplog.records) == 1
    assert sync.current_version() == 1  # keeps serving what it has
    publish_latest(store, "digits", 2, key, ttl=timedelta(days=60))  # re-signed with a fresh expiry
    assert sync.check_latest() == 2
    assert sync.metrics()["pointer_expired"] == 0


def test_pointer_moving_backwards_is_counted_once_per_change(
    tmp_path: Path, store: LocalStore, key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    sync = _sync(tmp_path, store, key)
    for v in (1, 2, 3):
        make_package(store, "digits", v, key, latest=False)
    publish_latest(store, "digits", 2, key)
    _deploy(sync, sync.check_latest() or 0)
    publish_latest(store, "digits", 3, key)
    assert sync.check_latest() == 3  # seen, not yet installed
    publish_latest(store, "digits", 2, key)
    with caplog.at_level(logging.WARNING, logger="edge.model_sync"):
        assert sync.check_latest() is None
        assert sync.check_latest() is None
    assert sync.metrics()["pointer_rollbacks"] == 1  # below v3 this device saw, though it serves v2
    assert sum("moved backwards" in r.getMessage() for r in caplog.records) == 1
    publish_latest(store, "digits", 1, key)
    assert sync.check_latest() is None
    assert sync.metrics()["pointer_rollbacks"] == 2


class RacingStore(LocalStore):
    """Serves the previous latest.json once, as a reader does that lands between the publisher's two writes."""

    def __init__(self, root: Path, stale: bytes) -> None:
        super().__init__(root)
        self.stale: bytes | None = stale

    def get(self, key: str) -> bytes:
        """The stale pointer on the first read of latest.json, the real objects after."""
        if key == POINTER and self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return super().get(key)


def test_reader_between_signature_and_pointer_retries_once(tmp_path: Path, key: KeyPair) -> None:
    root = tmp_path / "store"
    plain = LocalStore(root)
    make_package(plain, "digits", 1, key)
    old = plain.get(POINTER)
    make_package(plain, "digits", 2, key)  # new signature, new pointer
    sync = _sync(tmp_path, RacingStore(root, old), key)
    assert sync.check_latest() == 2
    assert sync.pointer_rejects == 0


def publish_channel(store: LocalStore, version: int, signer: KeyPair, channel: str = "canary") -> None:
    """What 'edgeferry publish-pointer --channel' writes: the signature, then the channel's pointer."""
    now = utcnow()
    body = store.get(f"models/digits/{version}/manifest.json")
    pointer = ChannelPointer(name="digits", version=version, manifest_sha256=sha256_bytes(body), published_at=now,
                             expires_at=now + timedelta(days=30), channel=channel)
    signed = sign_pointer(pointer, signer.private)
    store.put(pointer_signature_key("digits", channel), signed.signature)
    store.put(pointer_key("digits", channel), signed.body)


def test_a_channel_pointer_is_followed_only_by_devices_configured_for_it(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key)
    make_package(store, "digits", 2, key, latest=False)
    publish_channel(store, 2, key)
    assert store.exists("models/digits/channels/canary.json")
    assert _sync(tmp_path / "a", store, key).check_latest() == 1  # stable: latest.json, as before channels
    canary = _sync(tmp_path / "b", store, key, channel="canary")
    assert canary.check_latest() == 2
    _deploy(canary, 2)
    assert canary.current_version() == 2 and canary.pointer_rejects == 0


@pytest.mark.parametrize("attack", ["foreign-key", "latest-copied-into-channel", "channel-copied-over-latest"])
def test_a_channel_pointer_is_signature_checked_like_latest_json(
    tmp_path: Path, store: LocalStore, key: KeyPair, attack: str
) -> None:
    make_package(store, "digits", 1, key)
    make_package(store, "digits", 2, key, latest=False)
    canary_key = "models/digits/channels/canary.json"
    channel = "stable" if attack == "channel-copied-over-latest" else "canary"
    if attack == "foreign-key":
        publish_channel(store, 2, new_keypair())
    else:
        publish_channel(store, 2, key)
        publish_latest(store, "digits", 1, key)
        # Both pointers are validly signed by the trusted key; only the channel inside the signed bytes differs.
        src, dst = (POINTER, canary_key) if attack == "latest-copied-into-channel" else (canary_key, POINTER)
        store.put(dst, store.get(src))
        store.put(dst + ".sig", store.get(src + ".sig"))
    sync = _sync(tmp_path, store, key, channel=channel)
    for _ in range(2):
        assert sync.check_latest() is None
    assert sync.metrics()["pointer_rejects"] == 1
    assert sync.cache.installed_versions() == []


def test_a_fleet_managed_device_does_not_follow_a_published_pointer(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key)
    managed = _sync(tmp_path / "a", store, key, follow="desired")
    assert managed.mode == "desired" and managed.check_latest() is None
    auto = _sync(tmp_path / "b", store, key)  # the default: follows latest.json until a fleet manages it
    assert auto.mode == "latest" and auto.check_latest() == 1
    auto.managed = lambda: True  # it applied a signed desired state
    make_package(store, "digits", 2, key)
    assert auto.mode == "desired" and auto.check_latest() is None
    # What still moves a managed device: its pin (the desired state's), or an operator's explicit deploy.
    assert auto.check_latest(explicit=True) == 2
    pinned = _sync(tmp_path / "c", store, key, follow="desired", pinned_version=1)
    assert pinned.check_latest() == 1
    always = _sync(tmp_path / "d", store, key, follow="latest")
    always.managed = lambda: True
    assert always.mode == "latest" and always.check_latest() == 2
