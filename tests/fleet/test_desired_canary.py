"""The control plane marks a rollout's canaries in their signed desired state: a device a rollout moves forward is
a canary (its device runs the shadow check where it can afford it); a direct deploy, a group's final entry and a
rollback are not. Channel entries survive the database and are published as channel states."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.db.desired import DesiredEntry
from fleet.db.store import FleetStore
from fleet.desired import DesiredPublisher, converged
from shared.desired_state import DesiredState, verify_desired
from shared.signing import key_id

KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}


class Recorder:
    """A publisher that keeps what it was given (the broker path has its own tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.sent.append((topic, payload, retain))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FleetStore]:
    s = FleetStore.open(f"sqlite:///{tmp_path}/fleet.sqlite", "it")
    s.devices.update("cam-1", lambda r: replace(r, reported_status="online", model_name="tiny", model_version=1,
                                                reported_groups=("north",), groups=("north",)))
    yield s
    s.close()


def _published(store: FleetStore, entry: DesiredEntry) -> DesiredState:
    rec = Recorder()
    store.desired.set(entry)
    assert DesiredPublisher(store, rec, KEY).publish("cam-1", entry, force=True) is not None
    topic, payload, retain = rec.sent[-1]
    assert topic == "edgeferry/it/cam-1/desired" and retain
    return verify_desired(payload, TRUSTED, "it", "cam-1", "tiny")


@pytest.mark.parametrize(("entry", "canary"), [
    (DesiredEntry("device", "cam-1", "tiny", 2, rollout_id="r-1"), True),  # a rollout moves it forward
    (DesiredEntry("device", "cam-1", "tiny", 1, allow_downgrade=True, rollout_id="r-1"), False),  # its rollback
    (DesiredEntry("group", "north", "tiny", 2, rollout_id="r-1"), False),  # the group's entry once completed
    (DesiredEntry("device", "cam-1", "tiny", 2), False),  # a direct deploy
])
def test_only_a_rollout_s_forward_move_of_a_device_is_a_canary(store: FleetStore, entry: DesiredEntry,
                                                              canary: bool) -> None:
    assert _published(store, entry).canary is canary


def test_a_channel_entry_is_stored_and_published_as_a_channel_state(store: FleetStore) -> None:
    state = _published(store, DesiredEntry("group", "north", "tiny", None, channel="beta"))
    assert (state.version, state.channel) == (None, "beta")
    got = store.desired.get("group", "north")
    assert got is not None and (got.version, got.channel, got.target) == (None, "beta", "channel beta")
    pub = store.desired.published("cam-1")
    assert pub is not None and (pub.version, pub.channel) == (None, "beta")
    rec = store.devices.get("cam-1")
    assert rec is not None and converged(rec, got) is False
    assert converged(replace(rec, channel="beta"), got) is True
    # Republishing the same channel state sends nothing; a version entry after it does.
    assert DesiredPublisher(store, Recorder(), KEY).publish("cam-1", got) is None
    assert DesiredPublisher(store, Recorder(), KEY).publish("cam-1", replace(got, version=2, channel=None))
