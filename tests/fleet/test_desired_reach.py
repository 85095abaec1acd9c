"""A deploy or rollout of a model some target devices serve only beside their sync.model (their `models:`) stops
with one line naming those devices and what does move that model there (its channel pointer, a signed command):
the desired state it would publish is refused by such a device, one device at a time, and nothing is stored."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fleet.desired_reach import FurtherModelError, check_desired_reach
from fleet.registry import new_record
from tests.fixtures.broker import Broker
from tests.fleet.test_cli import Fleet

SIDE = ({"name": "tiny", "version": 1, "streams": ["pump"]},)


def test_only_devices_serving_the_model_beside_another_are_named() -> None:
    main = replace(new_record("it", "cam-1"), model_name="tiny", model_version=1)
    side = replace(new_record("it", "cam-2"), model_name="people", model_version=4, models=SIDE)
    other = replace(new_record("it", "cam-3"), model_name="people", model_version=4)
    check_desired_reach("tiny", [main, other])  # sync.model, or not served yet: the desired state moves it
    check_desired_reach("people", [side, other])
    with pytest.raises(FurtherModelError, match=r"tiny is a further model \(`models:`\) on cam-2: .*"
                                                r"publish-pointer --name tiny .*cmd DEVICE deploy model=tiny"):
        check_desired_reach("tiny", [main, side, other])


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Any:
    f = Fleet(tmp_path, mosquitto)
    yield f
    f.close()


@pytest.mark.parametrize("action", [
    ("deploy", "--model", "tiny", "--model-version", "2", "--group", "north"),
    ("rollout", "start", "--model", "tiny", "--model-version", "2", "--group", "north",
     "--set", "controller.trust_device_groups=true"),
])
def test_a_deploy_or_rollout_the_desired_state_cannot_carry_is_one_line_and_changes_nothing(
    fleet: Fleet, action: tuple[str, ...]
) -> None:
    fleet.store.devices.update("cam-2", lambda r: replace(r, model_name="people", model_version=4, models=SIDE))
    out = fleet.run(*action)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny is a further model (`models:`) on cam-2"), out.stderr
    assert fleet.store.desired.all() == []
    status = fleet.run("rollout", "status")
    assert "has no rollouts yet" in status.stderr, status
    time.sleep(0.3)
    assert fleet.probe.messages == [], "nothing reached the broker"


def test_a_rollback_the_desired_state_cannot_carry_is_one_line_and_changes_nothing(fleet: Fleet) -> None:
    for version in ("1", "2"):
        out = fleet.run("deploy", "--model", "tiny", "--model-version", version, "--group", "north")
        assert out.returncode == 0, out.stderr
    fleet.probe.wait_count("edgeferry/it/cam-2/cmd/deploy", 2)
    before = fleet.store.desired.all()
    # after the deploys, cam-2 came to serve tiny beside another sync.model: rolling tiny back cannot reach it there
    fleet.store.devices.update("cam-2", lambda r: replace(r, model_name="people", model_version=4, models=SIDE))
    time.sleep(0.3)
    sent = len(fleet.probe.messages)
    out = fleet.run("rollback", "--group", "north")
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny is a further model (`models:`) on cam-2"), out.stderr
    assert fleet.store.desired.all() == before
    time.sleep(0.3)
    assert len(fleet.probe.messages) == sent, "nothing more reached the broker"
