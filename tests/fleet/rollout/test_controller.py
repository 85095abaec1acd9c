"""The controller on SQLite and PostgreSQL with a fake clock: promotion, rollbacks, holds, deadlines, crashes."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.db.store import FleetStore
from fleet.errors import EmptyGroupError, RolloutConflictError, RolloutStateError, VersionCheckError
from fleet.rollout.controller import RolloutController
from fleet.rollout.operations import RolloutOperations
from fleet.rollout.plan import RolloutPlan, parse_plan
from fleet.rollout.selection import rank_key
from fleet.rollout.store import RolloutRepository
from tests.fleet.conftest import Clock
from tests.fleet.rollout.fake_fleet import MODEL, Crash, FakeFleet, FakePublisher

GATES: list[dict[str, Any]] = [
    {"metric": "thread_errors", "op": "<=", "threshold": 0, "aggregate": "increase", "min_samples": 2},
    {"kind": "restarts"},
    {"metric": "e2e_ms_p95", "op": "<=", "threshold": 1.5, "compare": "ratio_to_control"},
    {"metric": "conf_mean", "op": ">=", "threshold": -0.1, "compare": "difference_to_control"},
    {"metric": "low_conf_share", "op": "<=", "threshold": 0.1, "compare": "difference_to_control"},
    {"kind": "psi", "max_psi": 0.2, "min_results": 150},
]


def plan(**stage: Any) -> RolloutPlan:
    common = {"soak_s": 60, "analysis_interval_s": 10, "window_s": 120, "device_deadline_s": 60, "deadline_s": 600,
              "gates": GATES, **stage}
    return parse_plan({"stages": [{"name": "canary", "percent": 10, **common},
                                  {"name": "half", "percent": 50, **common},
                                  {"name": "all", "percent": 100, **common}]})


class World:
    """A group of fake devices, the real store and repositories, a controller and the operator's actions."""

    def __init__(self, store: FleetStore, clock: Clock, devices: int = 10) -> None:
        self.store, self.clock = store, clock
        self.publisher = FakePublisher(store)
        self.fleet = FakeFleet(store, clock, self.publisher)
        self.ids = self.fleet.add(devices)
        self.fleet.run(60)  # history before the rollout: the baseline
        self.ops = RolloutOperations(store)
        self.controller = RolloutController(store, None, self.publisher)

    def run(self, seconds: float) -> None:
        self.fleet.run(seconds, self.controller.tick)

    def status(self) -> Any:
        return self.ops.status(None)

    def versions(self) -> dict[str, int]:
        return {d.device_id: d.version for d in self.fleet.devices.values()}

    def kinds(self, rollout_id: str) -> list[str]:
        return [e.kind for e in self.ops.history(rollout_id)[1] if e.kind != "assign"]


@pytest.fixture
def world(store: FleetStore, clock: Clock) -> World:
    return World(store, clock)


def test_good_version_is_promoted_through_every_stage_to_the_whole_group(world: World) -> None:
    ro = world.ops.start(MODEL, 2, "lab", plan())
    world.run(50)
    st = world.status()
    assert st.rollout.stage_index == 0 and st.rollout.last_decision == "hold" and "soaking" in st.rollout.last_reason
    assert sum(v == 2 for v in world.versions().values()) == 1
    world.run(400)
    st = world.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    assert set(world.versions().values()) == {2}
    assert world.kinds(ro.id) == ["start", "advance", "advance", "complete"]
    group = world.store.desired.get("group", "lab")
    assert group is not None and group.version == 2 and group.rollout_id == ro.id
    assert world.store.desired.all() == [group]  # per-device overrides of the rollout are gone
    advance = next(e for e in world.ops.history(ro.id)[1] if e.kind == "advance")
    latency = next(g for g in advance.figures["gates"] if g["gate"].startswith("mean e2e_ms_p95"))
    assert latency["canary"] == 20.0 and latency["control"] == 20.0 and latency["threshold"] == 1.5


def test_slower_version_is_rolled_back_on_the_latency_gate(world: World) -> None:
    world.fleet.behave(2, "slow")
    ro = world.ops.start(MODEL, 2, "lab", plan())
    world.run(200)  # six 20 s windows after converging: the minimum sample
    st = world.status()
    assert st.rollout.state == "failed"
    assert "mean e2e_ms_p95 / control <= 1.5" in st.rollout.last_reason
    assert world.kinds(ro.id)[-1] == "rollback"
    world.run(20)
    assert set(world.versions().values()) == {1}
    assert world.store.desired.get("group", "lab") is None
    # Once back on v1 the rollback's pin is lifted, so a later deploy to the group reaches these devices.
    world.run(40)
    assert world.store.desired.all() == []
    assert {(d.state, d.fail_kind) for d in world.status().devices} == {("failed", "gate")}


@pytest.mark.parametrize("behaviour", ["unconfident", "drifting"])
def test_quality_gate_rolls_back_while_latency_is_fine(world: World, behaviour: str) -> None:
    world.fleet.behave(2, behaviour)  # type: ignore[arg-type]
    world.ops.start(MODEL, 2, "lab", plan())
    world.run(200)
    st = world.status()
    assert st.rollout.state == "failed", st.rollout.last_reason
    gates = {g["gate"]: g for g in st.rollout.last_gates}
    assert gates["mean e2e_ms_p95 / control <= 1.5"]["status"] == "pass"
    failing = {name for name, g in gates.items() if g["status"] == "fail"}
    assert failing & {"mean conf_mean - control >= -0.1", "mean low_conf_share - control <= 0.1",
                      "class-mix psi <= 0.2"}
    world.run(20)
    assert set(world.versions().values()) == {1}


def test_too_little_data_holds_then_pauses_at_the_deadline(world: World) -> None:
    world.fleet.behave(2, "silent")
    ro = world.ops.start(MODEL, 2, "lab", plan(deadline_s=300))
    world.run(200)
    st = world.status()
    assert st.rollout.state == "running" and st.rollout.last_decision == "hold"
    assert "samples of" in st.rollout.last_reason
    world.run(150)
    st = world.status()
    assert st.rollout.state == "paused" and "stage deadline passed" in st.rollout.last_reason
    assert world.kinds(ro.id) == ["start", "pause"]
    # Resume restarts the deadline instead of pausing again at once.
    world.ops.resume(ro.id)
    world.run(30)
    assert world.status().rollout.state == "running"


def test_offline_device_does_not_block_and_converges_when_it_returns(world: World) -> None:
    away = world.ids[3]
    world.fleet.devices[away].online = False
    world.run(40)  # the registry sees it offline
    world.ops.start(MODEL, 2, "lab", plan())
    world.run(700)
    st = world.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    row = next(d for d in st.devices if d.device_id == away)
    assert (row.state, row.fail_kind) == ("failed", "offline")
    assert world.versions()[away] == 1
    world.fleet.devices[away].online = True
    world.run(20)
    assert world.versions()[away] == 2


def test_device_that_rejects_the_package_fails_alone_within_budget(world: World) -> None:
    ro = world.ops.start(MODEL, 2, "lab", plan(max_failed_devices=1))
    # The second device in the rollout's order (it joins at the half stage): were it the canary stage's only
    # device, that stage would have no device left on the new version and hold to its deadline.
    bad = sorted(world.ids, key=lambda d: rank_key(ro.id, d))[1]
    world.fleet.behave(2, "rejects", [bad])
    world.run(700)
    st = world.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    row = next(d for d in st.devices if d.device_id == bad)
    assert (row.state, row.fail_kind) == ("failed", "rejected")
    assert "device-failed" in world.kinds(ro.id)
    versions = world.versions()
    assert versions[bad] == 1 and all(v == 2 for d, v in versions.items() if d != bad)


def test_crash_loop_fails_the_restarts_gate(world: World) -> None:
    world.fleet.behave(2, "crashloop")
    world.ops.start(MODEL, 2, "lab", plan())
    world.run(60)
    st = world.status()
    assert st.rollout.state == "failed" and "restarted" in st.rollout.last_reason


def test_device_joining_mid_rollout_gets_the_current_verdict(world: World) -> None:
    world.ops.start(MODEL, 2, "lab", plan())
    world.run(160)  # the canary stage: six 20 s windows of its device
    assert world.status().rollout.stage_index == 1
    late = world.fleet.add(1, prefix="late")[0]
    world.run(10)
    before = {d.device_id for d in world.status().devices}
    assert len(before) == 6  # 50 % of 11 devices: the joiner is placed by the same hash order
    world.run(400)
    assert world.status().rollout.state == "completed"
    assert world.versions()[late] == 2


def test_operator_pause_promote_and_abort(world: World) -> None:
    ro = world.ops.start(MODEL, 2, "lab", plan(soak_s=10_000, deadline_s=20_000))
    world.run(30)
    world.ops.pause(ro.id)
    world.run(30)
    with pytest.raises(RolloutStateError, match="it is paused"):
        world.ops.pause(ro.id)
    world.ops.promote("lab")  # by group name
    world.run(60)
    st = world.status()
    assert st.rollout.stage_index == 1 and st.rollout.state == "running"
    assert sum(v == 2 for v in world.versions().values()) == 5
    world.ops.abort(ro.id)
    world.run(40)  # the controller publishes the restored desired state on its next tick
    assert set(world.versions().values()) == {1}
    world.run(40)
    assert {d.state for d in world.status().devices} == {"restored"} and world.store.desired.all() == []
    assert world.kinds(ro.id) == ["start", "pause", "promote", "abort"]
    with pytest.raises(RolloutStateError, match="it is aborted"):
        world.ops.resume(ro.id)


def test_bad_starts_are_one_error_and_change_nothing(world: World) -> None:
    repo = RolloutRepository(world.store.engine, world.store.fleet)
    world.ops.start(MODEL, 2, "lab", plan())
    with pytest.raises(RolloutConflictError, match="group 'lab' of fleet 'lab' already has a rollout running"):
        world.ops.start(MODEL, 3, "lab", plan())
    with pytest.raises(EmptyGroupError, match="group 'nobody'"):
        world.ops.start(MODEL, 2, "nobody", plan())

    def missing(model: str, version: int) -> None:
        raise VersionCheckError(f"{model} v{version} is not in the store")

    world.fleet.group = "other"
    world.fleet.add(2, prefix="oth")
    with pytest.raises(VersionCheckError, match="digits v9 is not in the store"):
        world.ops.start(MODEL, 9, "other", plan(), check_version=missing)
    assert len(repo.latest()) == 1


def test_kill_at_any_point_resumes_without_skipping_or_repeating_a_stage(store: FleetStore, clock: Clock) -> None:
    """Kill the controller before each publish and right after each committed decision; a new one resumes."""
    clean = World(store, clock, devices=5)
    ro = clean.ops.start(MODEL, 2, "lab", plan())
    decisions = [0]
    real = clean.controller.repo.apply

    def counting(row: Any, change: Any, now: int) -> bool:
        done = real(row, change, now)
        decisions[0] += bool(done and change.events)
        return done

    clean.controller.repo.apply = counting  # type: ignore[method-assign]
    clean.run(400)
    want = clean.kinds(ro.id)
    assert want[-1] == "complete"
    points = [("publish", n) for n in range(1, clean.publisher.calls + 1, max(1, clean.publisher.calls // 3))]
    points += [("commit", n) for n in range(1, decisions[0] + 1)]
    assert len(points) <= 12, points

    for mode, at in points:
        w = World(FleetStore(store.engine, f"{mode}{at}", clock=clock), clock, devices=5)
        ro = w.ops.start(MODEL, 2, "lab", plan())
        if mode == "publish":
            w.publisher.fail_at = at
        commits = [0]
        kills = [0]

        def arm(controller: RolloutController, mode: str = mode, at: int = at, commits: list[int] = commits
                ) -> RolloutController:
            real_apply = controller.repo.apply

            def apply_then_die(row: Any, change: Any, now: int) -> bool:
                done = real_apply(row, change, now)
                if done and change.events:
                    commits[0] += 1
                    if mode == "commit" and commits[0] == at:
                        raise Crash("after commit")
                return done

            controller.repo.apply = apply_then_die  # type: ignore[method-assign]
            return controller

        w.controller = arm(w.controller)

        def tick(w: World = w, kills: list[int] = kills, arm: Any = arm) -> None:
            try:
                w.controller.tick()
            except Crash:
                kills[0] += 1
                w.controller = arm(RolloutController(w.store, None, w.publisher))  # restart after kill -9

        w.fleet.run(400, tick)
        assert kills[0] == 1, f"{mode} {at}: the injected kill did not happen"
        assert w.kinds(ro.id) == want, f"killed at {mode} {at}"
        assert set(w.versions().values()) == {2}, f"killed at {mode} {at}"


def test_a_device_failing_a_gate_goes_back_at_once_and_stays_back_after_completion(world: World) -> None:
    """Issue 17: a device that fails a gate within the budget is sent its prior version in the same decision, and
    the completed rollout's group version never reaches it afterwards (completed never means it runs the failing
    version)."""
    ro = world.ops.start(MODEL, 2, "lab", plan(max_failed_devices=1))
    bad = sorted(world.ids, key=lambda d: rank_key(ro.id, d))[1]  # joins at the half stage
    world.fleet.behave(2, "slow", [bad])
    failed_at = None
    for _ in range(60):
        world.run(10)
        row = next((d for d in world.status().devices if d.device_id == bad), None)
        if row is not None and row.state == "failed" and failed_at is None:
            failed_at = world.clock()
            want = world.store.desired.get("device", bad)
            assert want is not None and want.version == 1 and want.allow_downgrade  # sent back in that decision
        st = world.status()
        if st.rollout.state == "completed":
            assert world.store.desired.get("device", bad) is not None, "completed without pinning the failed device"
    assert failed_at is not None
    st = world.status()
    assert st.rollout.state == "completed", st.rollout.last_reason
    world.run(120)  # well after completion: the pin is never lifted onto the failing version
    assert world.versions()[bad] == 1
    assert all(v == 2 for d, v in world.versions().items() if d != bad)


def test_a_device_failing_in_the_decision_that_completes_the_rollout_is_not_moved_onto_the_version(
        world: World) -> None:
    """The last stage passes within its budget in the same verdict that fails a device: completion must not lift
    that device's way back, and a device whose own figures look bad holds the stage until they are clear."""
    ro = world.ops.start(MODEL, 2, "lab", plan(max_failed_devices=1))
    bad = sorted(world.ids, key=lambda d: rank_key(ro.id, d))[-1]  # joins at the last stage
    world.fleet.behave(2, "slow", [bad])
    for _ in range(60):
        world.run(10)
        st = world.status()
        if st.rollout.state == "completed":
            row = next(d for d in st.devices if d.device_id == bad)
            assert (row.state, row.fail_kind) == ("failed", "gate"), "completed before the slow device was judged"
            break
    assert world.status().rollout.state == "completed", world.status().rollout.last_reason
    world.run(120)
    assert world.versions()[bad] == 1
    assert all(v == 2 for d, v in world.versions().items() if d != bad)
