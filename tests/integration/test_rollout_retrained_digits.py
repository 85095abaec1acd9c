"""Issue 17 with a real model: the default rollout plan, four real agents reading real MNIST digit images, and
digits models trained by the cloud trainer. A version retrained with a new seed promotes through every stage; the
same network with its labels permuted fails at the first stage. No agent sets sync.shadow_every: the fleet marks
canaries in their desired state and each canary turns the shadow check on because the model is cheap on it.

Set EDGEFERRY_ROLLOUT_RECORD to a directory to keep each run's status and history as JSON there
(bench/results/rollouts.md is written from those)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.object_store import LocalStore
from tests.edge.package_factory import new_keypair, publish_latest
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually
from tests.integration.agent_harness import write_public_key
from tests.integration.digits_packages import DigitsBuild, build, publish, write_digit_images
from tests.integration.rollout_fleet import rollout_cli, rollout_fleet, run_rollout

AGENTS = 4
SHADOW_GATE = "mean shadow_agreement >= 0.9"

# Training the two digits models is most of the time: ~2 min on a quiet 2-core machine, over 10 min at load 15.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DigitsBuild]:
    """v1 (seed 42), a retrained v2 (seed 7) and v1 with permuted labels: trained once per session."""
    work = tmp_path_factory.mktemp("digits")
    first = build(work, 42)
    return {"first": first, "retrained": build(work, 7), "permuted": build(work, 42, permuted_from=first)}


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Broker, digits: dict[str, DigitsBuild]) -> Iterator[dict[str, Any]]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    publish(store, digits["first"], 1, keys)
    publish_latest(store, "digits", 1, keys)
    pub = write_public_key(keys, tmp_path / "pkg.pub")
    images = write_digit_images(tmp_path / "digits")
    # No sync.shadow_every: a canary turns the shadow check on by itself.
    with rollout_fleet(tmp_path, mosquitto, store, keys, pub, agents=AGENTS, ready_s=180,
                       source={"type": "image_dir", "path": str(images), "loop": True, "max_fps": 20},
                       agent_settings={"sync.model": "digits"}) as f:
        yield f


def _rollout(fleet: dict[str, Any], name: str) -> dict[str, Any]:
    started = time.monotonic()
    st = run_rollout(fleet, "digits", 400)
    history = json.loads(rollout_cli(fleet["conf"], "history", "--output", "json"))
    record = os.environ.get("EDGEFERRY_ROLLOUT_RECORD")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        (Path(record) / f"{name}.json").write_text(json.dumps(
            {"status": st, "history": history, "seconds": round(time.monotonic() - started, 1),
             "load": os.getloadavg()}, indent=1, default=str))
    st["history_kinds"] = [e["kind"] for e in history if e["kind"] in ("advance", "complete", "rollback")]
    return st


def test_a_label_permuted_digits_model_fails_at_the_first_stage(fleet: dict[str, Any],
                                                                 digits: dict[str, DigitsBuild]) -> None:
    assert digits["permuted"].test_accuracy < 0.1 < 0.9 < digits["first"].test_accuracy
    publish(fleet["store"], digits["permuted"], 2, fleet["keys"])
    st = _rollout(fleet, "permuted")
    assert st["state"] == "failed" and st["stage"]["name"] == "canary", st["last_reason"]
    shadow = {g["gate"]: g for g in st["gates"]}[SHADOW_GATE]
    assert shadow["status"] == "fail" and shadow["evidence"]["high"] < 0.9  # the canary's own shadow check
    eventually(lambda: all(d.model_version == 1 for d in fleet["db"].list_devices()), 60, "every agent on v1")


def test_a_digits_model_retrained_with_a_new_seed_passes_every_stage(fleet: dict[str, Any],
                                                                     digits: dict[str, DigitsBuild]) -> None:
    assert digits["retrained"].test_accuracy > 0.9
    publish(fleet["store"], digits["retrained"], 2, fleet["keys"])
    st = _rollout(fleet, "retrained")
    assert st["state"] == "completed", st["last_reason"]
    assert st["history_kinds"] == ["advance", "advance", "complete"]
    eventually(lambda: all(d.model_version == 2 for d in fleet["db"].list_devices()), 60, "every agent on v2")
