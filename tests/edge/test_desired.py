"""The device's desired-state component without a broker: check, then persist, then pin and deploy; the state in
force re-affirmed on reconnect; a corrupt state file refuses everything; an empty message releases the pin."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.desired import DesiredFile, DesiredSync
from shared.desired_state import DesiredState, sign_desired
from shared.errors import EdgeferryError
from shared.signing import key_id
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink

KEY = Ed25519PrivateKey.generate()
TOPICS = DeviceTopics("lab", "cam-1")


class Device:
    """What the agent gives the component: deploy, pin (live config) and the served version."""

    def __init__(self, serving: int | None = 1, fail: bool = False) -> None:
        self.serving, self.fail = serving, fail
        self.pins: list[int | None] = []
        self.deploys: list[tuple[int | None, bool]] = []

    def deploy(self, version: int | None, *, explicit: bool, allow_downgrade: bool) -> Mapping[str, Any]:
        self.deploys.append((version, allow_downgrade))
        if self.fail:
            raise EdgeferryError("store unreachable")
        self.serving = version
        return {"version": version}

    def pin(self, values: Mapping[str, Any]) -> None:
        self.pins.append(values["sync.pinned_version"])


def _sync(tmp_path: Path, device: Device) -> tuple[DesiredSync, FakeLink]:
    link = FakeLink()
    sync = DesiredSync(link, TOPICS, trusted={key_id(KEY.public_key()): KEY.public_key()},
                       store=DesiredFile(tmp_path / "desired-state.json"), deploy=device.deploy, pin=device.pin,
                       served=lambda: device.serving, model="m")
    sync.start()
    return sync, link


def _msg(version: int, seq: int, **over: Any) -> bytes:
    return sign_desired(DesiredState(fleet="lab", device_id="cam-1", model="m", version=version, issued_at_ms=1,
                                     seq=seq, **over), KEY)


def _settle(sync: DesiredSync, want: dict[str, float]) -> dict[str, float]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        figures = sync.metrics()
        if all(figures[k] == v for k, v in want.items()):
            return figures
        time.sleep(0.01)
    raise AssertionError(f"figures {sync.metrics()} never reached {want}")


def test_applies_persists_and_repins_after_a_restart_without_refusing_the_same_state(tmp_path: Path) -> None:
    device = Device()
    sync, link = _sync(tmp_path, device)
    link.deliver(TOPICS.desired, _msg(3, seq=10))
    _settle(sync, {"desired_applied": 1, "desired_version": 3})
    sync.stop()
    assert device.serving == 3 and device.pins == [3]

    restarted = Device(serving=3)
    sync2, link2 = _sync(tmp_path, restarted)
    assert restarted.pins[:1] == [3]  # pinned before any message arrives
    link2.deliver(TOPICS.desired, _msg(3, seq=10))  # the retained message again on connect
    link2.deliver(TOPICS.desired, _msg(1, seq=9, allow_downgrade=True))  # an older one
    figures = _settle(sync2, {"desired_refused": 1})
    sync2.stop()
    assert figures["desired_applied"] == 0 and figures["desired_version"] == 3
    assert restarted.deploys == []  # already serving what is desired: no reload of the same model


def test_a_failed_deploy_keeps_the_pin_for_the_poll_loop_to_retry(tmp_path: Path) -> None:
    device = Device(fail=True)
    sync, link = _sync(tmp_path, device)
    link.deliver(TOPICS.desired, _msg(2, seq=5))
    _settle(sync, {"desired_applied": 1})
    sync.stop()
    assert device.pins == [2] and device.deploys == [(2, False)] and sync.last_error == "store unreachable"


def test_corrupt_state_file_refuses_desired_state(tmp_path: Path) -> None:
    (tmp_path / "desired-state.json").write_text("{not json")
    device = Device()
    sync, link = _sync(tmp_path, device)
    link.deliver(TOPICS.desired, _msg(2, seq=5))
    _settle(sync, {"desired_refused": 1})
    sync.stop()
    assert device.deploys == [] and "corrupt" in (sync.last_error or "")


def test_empty_message_releases_the_pin_and_keeps_the_seq(tmp_path: Path) -> None:
    device = Device()
    sync, link = _sync(tmp_path, device)
    link.deliver(TOPICS.desired, _msg(2, seq=5))
    _settle(sync, {"desired_version": 2})
    link.deliver(TOPICS.desired, b"")
    _settle(sync, {"desired_version": 0})
    link.deliver(TOPICS.desired, _msg(1, seq=5))  # the cleared state's seq stays spent
    _settle(sync, {"desired_refused": 1})
    sync.stop()
    assert device.pins == [2, None] and DesiredFile(tmp_path / "desired-state.json").last_seq == 5


def test_a_desired_state_for_another_model_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    device = Device(serving=4)
    sync, link = _sync(tmp_path, device)
    link.deliver(TOPICS.desired, sign_desired(DesiredState(fleet="lab", device_id="cam-1", model="faces", version=1,
                                                           allow_downgrade=True, issued_at_ms=1, seq=9), KEY))
    figures = _settle(sync, {"desired_refused": 1})
    sync.stop()
    assert figures["desired_applied"] == 0 and figures["desired_version"] == 0
    assert device.serving == 4 and device.deploys == [] and device.pins == []
    assert not (tmp_path / "desired-state.json").exists()
    assert "faces" in (sync.last_error or "") and "'m'" in (sync.last_error or "")
    # The refused state spent no sequence number: the next state for this model applies.
    sync2, link2 = _sync(tmp_path, device)
    link2.deliver(TOPICS.desired, _msg(5, seq=9))
    _settle(sync2, {"desired_applied": 1, "desired_version": 5})
    sync2.stop()
    assert device.serving == 5


def test_a_persisted_state_for_another_model_is_not_re_pinned(tmp_path: Path) -> None:
    DesiredFile(tmp_path / "desired-state.json").record(
        9, DesiredState(fleet="lab", device_id="cam-1", model="faces", version=1, issued_at_ms=1, seq=9))
    device = Device(serving=4)
    sync, _ = _sync(tmp_path, device)
    sync.stop()
    assert device.pins == [] and device.deploys == [] and sync.version is None


def test_a_channel_state_releases_the_pin_and_makes_the_device_follow_that_channel(tmp_path: Path) -> None:
    device = Device(serving=2)
    sync, link = _sync(tmp_path, device)
    assert not sync.seen and sync.channel is None
    link.deliver(TOPICS.desired, _msg(3, seq=7))
    _settle(sync, {"desired_applied": 1})
    assert sync.seen and device.pins[-1] == 3
    channel = sign_desired(DesiredState(fleet="lab", device_id="cam-1", model="m", channel="canary", issued_at_ms=1,
                                        seq=8), KEY)
    link.deliver(TOPICS.desired, channel)
    _settle(sync, {"desired_applied": 2, "desired_version": 0})
    assert sync.channel == "canary" and device.pins[-1] is None
    assert device.deploys[-1] == (None, False)  # deploy what the channel's pointer names, at once
    again = DesiredFile(tmp_path / "desired-state.json")  # kept across restarts
    assert again.state is not None and again.state.channel == "canary"
    link.deliver(TOPICS.desired, b"")
    deadline = time.monotonic() + 5
    while sync.channel is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sync.channel is None and sync.seen  # cleared, but the device stays fleet-managed
    sync.stop()
