"""A canary runs the shadow check without any per-device config: a real agent (no sync.shadow_every) that receives a
signed desired state marking it a rollout's canary on v2 reports shadow agreement with v1 over real Mosquitto; the
same agent with a cost budget its previous version cannot meet runs no shadow and reports none."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shared.desired_state import DesiredState, sign_desired
from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, topics_of, write_public_key

SYNTHETIC = {"type": "synthetic", "width": 32, "height": 32, "fps": 25}


def _canary(tree: dict[str, Any], version: int, seq: int) -> bytes:
    return sign_desired(DesiredState(fleet=tree["device"]["fleet"], device_id=tree["device"]["device_id"],
                                     model="tiny", version=version, rollout_id="r-1", canary=True,
                                     issued_at_ms=int(time.time() * 1000), seq=seq), COMMAND_KEY)


def _telemetry_on(probe: MqttProbe, tree: dict[str, Any], version: int, reports: int) -> list[dict[str, Any]]:
    topic = topics_of(tree).telemetry

    def enough(_: object) -> bool:
        return len([m for m in probe.on(topic) if m.json().get("model_version") == version]) >= reports

    probe.wait_for(lambda m: m.topic == topic and enough(m), 60, f"{reports} telemetry reports on v{version}")
    return [m.json() for m in probe.on(topic) if m.json().get("model_version") == version]


@pytest.mark.parametrize(("budget_ms", "shadow"), [(None, True), (1e-6, False)], ids=["affordable", "over-budget"])
def test_a_canary_runs_the_shadow_check_only_when_it_can_afford_it(tmp_path: Path, mosquitto: Broker,
                                                                   budget_ms: float | None, shadow: bool) -> None:
    store, keys = LocalStore(tmp_path / "store"), new_keypair()
    make_package(store, "tiny", 1, keys)
    make_package(store, "tiny", 2, keys, latest=False)  # the same weights: the same top-1 on every frame
    over = {"events.mode": "off", "sync.poll_interval_s": 60}
    if budget_ms is not None:
        over["sync.shadow_canary_budget_ms"] = budget_ms  # type: ignore[assignment]
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), mosquitto, SYNTHETIC, **over)
    assert "shadow_every" not in tree["sync"]
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        _telemetry_on(probe, tree, 1, 1)
        probe.client.publish(topics.desired, _canary(tree, 2, seq=10), qos=1, retain=True).wait_for_publish(10)
        reports = _telemetry_on(probe, tree, 2, 8)
        compared = sum(t.get("shadow_frames", 0) for t in reports)
        if shadow:
            assert compared > 0 and agent.shadow.shadow_version == 1
            assert {t["shadow_agreement"] for t in reports if t.get("shadow_frames")} == {1.0}
        else:
            assert compared == 0 and not any("shadow_agreement" in t for t in reports)
            assert agent.shadow.shadow_version is None and agent.shadow.cost_ms is not None
    probe.close()
