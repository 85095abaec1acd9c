"""The default rollout plan with real agents: real Mosquitto, `fleet serve`, four in-process agents running real ONNX
packages with the shadow check on (sync.shadow_every). A version whose labels are permuted fails at the canary stage
on the shadow agreement; a version that predicts the same classes passes every stage. The package factory's model
is a small random network, so "the same predictions" is the same weights published again, not a retrained one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.object_store import LocalStore
from tests.edge.package_factory import DEFAULT_LABELS, make_package, new_keypair
from tests.fixtures.broker import Broker
from tests.integration.agent_harness import write_public_key
from tests.integration.rollout_fleet import rollout_cli, rollout_fleet, run_rollout

AGENTS = 4


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker) -> Iterator[dict[str, Any]]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys)
    pub = write_public_key(keys, tmp_path / "pkg.pub")
    with rollout_fleet(tmp_path, mosquitto, store, keys, pub, agents=AGENTS,
                       source={"type": "synthetic", "width": 32, "height": 32, "fps": 20},
                       agent_settings={"sync.shadow_every": 2}) as f:
        yield f


def _rollout(fleet: dict[str, Any]) -> dict[str, Any]:
    return run_rollout(fleet, "tiny", 300)


def test_a_label_permuted_version_fails_at_the_canary_stage(fleet: dict[str, Any]) -> None:
    rotated = [*DEFAULT_LABELS[1:], DEFAULT_LABELS[0]]
    make_package(fleet["store"], "tiny", 2, fleet["keys"], labels=rotated, latest=False)
    st = _rollout(fleet)
    assert st["state"] == "failed" and st["stage"]["name"] == "canary", st["last_reason"]
    shadow = {g["gate"]: g for g in st["gates"]}["mean shadow_agreement >= 0.9"]
    assert shadow["status"] == "fail" and shadow["evidence"]["high"] < 0.9  # the devices' own shadow check


def test_a_version_with_the_same_predictions_passes_every_stage(fleet: dict[str, Any]) -> None:
    make_package(fleet["store"], "tiny", 2, fleet["keys"], latest=False)  # the same weights, published again
    st = _rollout(fleet)
    assert st["state"] == "completed", st["last_reason"]
    assert [e["kind"] for e in json.loads(rollout_cli(fleet["conf"], "history", "--output", "json"))
            if e["kind"] in ("advance", "complete", "rollback")] == ["advance", "advance", "complete"]
