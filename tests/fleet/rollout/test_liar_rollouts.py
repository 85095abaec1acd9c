"""Rollouts that one lying device cannot move, through the controller on SQLite and PostgreSQL: a device that only
claims the group stays out of the cohorts, and a device the control plane does trust cannot flip a verdict by
flooding class counts or by reporting an absurd latency in the control cohort. Status names the suspects."""

from __future__ import annotations

import pytest

from fleet.db.store import FleetStore
from fleet.errors import EmptyGroupError
from fleet.rollout.operations import RolloutOperations
from tests.fleet.conftest import Clock
from tests.fleet.rollout.fake_fleet import MODEL, Behaviour
from tests.fleet.rollout.test_controller import World, plan


def liar_world(store: FleetStore, clock: Clock, behaviour: Behaviour, assigned: bool,
               trust: bool = False) -> tuple[World, str]:
    """Ten honest devices of group lab and one liar that names lab in its own state (assigned here or not)."""
    world = World(store, clock)
    liar = world.fleet.add(1, prefix="liar", assigned=assigned)[0]
    world.fleet.behave(1, behaviour, [liar])
    world.fleet.behave(2, behaviour, [liar])
    world.fleet.run(60)
    world.ops = RolloutOperations(store, trust_device_groups=trust)
    return world, liar


def test_a_device_that_only_claims_the_group_is_left_out_and_named(store: FleetStore, clock: Clock) -> None:
    w, liar = liar_world(store, clock, "flooder", assigned=False)
    ro = w.ops.start(MODEL, 2, "lab", plan())
    w.run(500)
    st = w.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    assert liar not in {d.device_id for d in st.devices}
    assert "names group lab in its own state without an assignment" in st.suspects()[liar][0]
    assert w.kinds(ro.id) == ["start", "advance", "advance", "complete"]


def test_claims_alone_cannot_start_a_rollout_unless_the_config_trusts_them(store: FleetStore, clock: Clock) -> None:
    w = World(store, clock, devices=0)
    w.fleet.group = "east"
    w.fleet.add(3, prefix="east", assigned=False)
    with pytest.raises(EmptyGroupError, match=r"no devices assigned to it here; 3 name it in their own state .*"
                                              r"'edgeferry fleet groups assign DEVICE east'"):
        w.ops.start(MODEL, 2, "east", plan())
    ro = RolloutOperations(store, trust_device_groups=True).start(MODEL, 2, "east", plan())
    assert ro.baseline["trust_device_groups"] is True


def test_with_trusted_claims_the_claimant_is_in_the_cohorts(store: FleetStore, clock: Clock) -> None:
    w, liar = liar_world(store, clock, "good", assigned=False, trust=True)
    w.ops.start(MODEL, 2, "lab", plan())
    w.run(500)
    st = w.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    assert liar in {d.device_id for d in st.devices} and st.suspects() == {}


def test_a_trusted_device_flooding_class_counts_cannot_roll_back_a_good_version(store: FleetStore,
                                                                                 clock: Clock) -> None:
    w, liar = liar_world(store, clock, "flooder", assigned=True)
    ro = w.ops.start(MODEL, 2, "lab", plan())
    w.run(500)
    st = w.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    assert w.kinds(ro.id) == ["start", "advance", "advance", "complete"]
    assert "its reported fps allows at most" in st.suspects()[liar][0]
    assert st.as_dict()["suspects"] == st.suspects()


def test_a_trusted_device_masking_latency_cannot_promote_a_slower_version(
    store: FleetStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This rollout id ranks the liar 8th of 11: it stays in the control cohort through the canary and half stages.
    monkeypatch.setattr("fleet.rollout.operations.secrets.token_hex", lambda _n: "000000000003")
    w, liar = liar_world(store, clock, "masker", assigned=True)
    w.fleet.behave(2, "slow", w.ids)
    ro = w.ops.start(MODEL, 2, "lab", plan())
    w.run(120)
    st = w.status()
    assert st.rollout.state == "failed" and st.rollout.stage_index == 0, st.rollout.last_reason
    assert "mean e2e_ms_p95 / control <= 1.5" in st.rollout.last_reason
    kinds = w.kinds(ro.id)
    assert kinds[-1] == "rollback" and "advance" not in kinds, kinds
    assert liar not in {d.device_id for d in st.devices}
    latency = next(g for g in st.rollout.last_gates if g["gate"] == "mean e2e_ms_p95 / control <= 1.5")
    assert latency["control"] == 20.0
    assert "control: e2e_ms_p95" in st.suspects()[liar][0]
