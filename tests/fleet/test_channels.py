"""Channels from the fleet: `fleet deploy --channel` issues signed channel desired states (no deploy command: the
channel's pointer names the version), the registry keeps each device's follow mode and channel from its state
payload, and `fleet devices` shows them. Real Mosquitto, a real `fleet serve` worker, the real CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from cloud.publish import publish_pointer
from shared.desired_state import verify_desired
from shared.payloads import StatePayload
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_config, serving
from tests.fleet.test_cli import TRUSTED, Fleet


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Any:
    f = Fleet(tmp_path, mosquitto)
    yield f
    f.close()


def _state(device: str, version: int, follow: str | None, channel: str | None) -> bytes:
    return StatePayload(
        device_id=device, boot_id="boot-a", seq=0, ts=int(time.time() * 1000), agent_version="0.1.0",
        model={"name": "tiny", "version": version}, hardware={}, config_digest="d", groups=["north"],
        telemetry_interval_s=60.0, follow=follow, channel=channel,
    ).model_dump_json().encode()


def test_deploy_channel_publishes_a_signed_channel_state_and_no_deploy_command(fleet: Fleet) -> None:
    publish_pointer(fleet.pkg, "tiny", fleet.keys.private, channel="canary", version=2)
    out = fleet.run("deploy", "--model", "tiny", "--channel", "canary", "--group", "north")
    assert out.returncode == 0, out.stderr
    assert "deployed tiny channel canary to group north: 2 device(s) (cam-1, cam-2)" in out.stdout
    for dev in ("cam-1", "cam-2"):
        msg = fleet.probe.wait_for(lambda m, d=dev: m.topic == f"edgeferry/it/{d}/desired")
        state = verify_desired(msg.payload, TRUSTED, "it", dev, "tiny")
        assert (state.version, state.channel, state.canary) == (None, "canary", False)
    time.sleep(0.3)
    assert not [m for m in fleet.probe.messages if "/cmd/" in m.topic], "the pointer moves it, not a command"
    rows = {d["device_id"]: d for d in json.loads(fleet.run("devices", "--output", "json").stdout)}
    assert rows["cam-1"]["desired_channel"] == "canary" and rows["cam-1"]["converged"] is False
    assert "channel canary" in fleet.run("devices").stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--channel", "beta"], "channel beta of tiny has no pointer .*publish-pointer --channel beta"),
    (["--channel", "canary", "--model-version", "1"], "name exactly one of --model-version V .* and --channel C"),
    ([], "name exactly one of --model-version V"),
    (["--channel", "a/b"], "invalid channel name"),
])
def test_a_bad_channel_deploy_is_one_line_and_changes_nothing(fleet: Fleet, args: list[str], message: str) -> None:
    publish_pointer(fleet.pkg, "tiny", fleet.keys.private, channel="canary", version=2)
    out = fleet.run("deploy", "--model", "tiny", "--group", "north", *args)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert re.search(message, lines[0]), lines[0]
    assert fleet.store.desired.all() == []
    time.sleep(0.3)
    assert fleet.probe.messages == [], "nothing reached the broker"


def test_the_registry_keeps_follow_mode_and_channel_and_devices_shows_them(tmp_path: Path,
                                                                         mosquitto: Broker) -> None:
    cfg = fleet_config(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite")
    probe = MqttProbe(mosquitto)
    with serving(cfg) as svc:
        store = svc.store
        assert store is not None
        probe.publish("edgeferry/it/cam-1/state", _state("cam-1", 1, "latest", "beta"), retain=True)
        probe.publish("edgeferry/it/cam-2/state", _state("cam-2", 2, "desired", "stable"), retain=True)
        probe.publish("edgeferry/it/cam-3/state", _state("cam-3", 1, None, None), retain=True)  # an older agent
        eventually(lambda: len(store.devices.all()) == 3, what="three devices registered")
        got = {r.device_id: (r.follow, r.channel) for r in store.devices.all()}
        assert got == {"cam-1": ("latest", "beta"), "cam-2": ("desired", "stable"), "cam-3": (None, None)}
        probe.publish("edgeferry/it/cam-1/state", _state("cam-1", 1, "desired", "canary"), retain=True)
        eventually(lambda: store.devices.get("cam-1").follow == "desired", what="cam-1's new follow mode")  # type: ignore[union-attr]
        assert store.devices.get("cam-1").channel == "canary"  # type: ignore[union-attr]
    probe.close()
