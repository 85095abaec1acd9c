"""The fleet page's reads over the real control-plane store and rollout controller (SQLite, fake clock): canary and
control membership per device from a running rollout, desired vs installed, summary counts equal to the registry's,
and the rollout's devices per state per stage, per-device gate figures and the last decision's reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.fleet_adapter import FleetAdapter
from fleet.db.store import FleetStore
from tests.dashboards.web.conftest import TOKEN, web_config
from tests.fleet.conftest import Clock
from tests.fleet.rollout.fake_fleet import MODEL
from tests.fleet.rollout.test_controller import World, plan

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    store = FleetStore.open(f"sqlite:///{tmp_path}/fleet.sqlite", "lab", clock=clock)
    try:
        yield World(store, clock)
    finally:
        store.close()


def test_fleet_rows_carry_cohorts_and_desired_and_the_summary_counts_the_registry(world: World) -> None:
    ro = world.ops.start(MODEL, 2, "lab", plan())
    world.run(50)  # the canary stage selected one device of ten and it installed the new version
    adapter = FleetAdapter(world.store, None, None, EventBuffer(), FigureBuffer())
    rows = {r.device_id: r for r in adapter.devices()}
    canaries = [d for d, r in rows.items() if r.cohort == "canary"]
    assert len(canaries) == 1 and Counter(r.cohort for r in rows.values()) == {"canary": 1, "control": 9}
    assert {r.rollout_id for r in rows.values()} == {ro.id}
    canary = rows[canaries[0]]
    assert (canary.desired_version, canary.model_version) == (2, 2)
    assert all(r.model_version == 1 for d, r in rows.items() if d != canaries[0])
    with TestClient(create_app(web_config(), adapter, adapter)) as client:
        summary = client.get("/api/fleet/summary", headers=BEARER).json()
        page = client.get("/api/fleet/devices?limit=3", headers=BEARER)
    registry = world.store.list_devices()
    assert summary["total"] == len(registry) == 10
    assert summary["counts"]["status"] == dict(Counter(r.status for r in registry))
    assert summary["counts"]["cohort"] == {"canary": 1, "control": 9}
    assert summary["counts"]["version"] == {f"{MODEL} v1": 9, f"{MODEL} v2": 1}
    assert summary["counts"]["group"] == {"lab": 10}
    assert page.headers["x-total-count"] == "10" and len(page.json()) == 3


def test_rollout_view_has_devices_per_stage_gate_distributions_and_the_reason(world: World) -> None:
    ro = world.ops.start(MODEL, 2, "lab", plan())
    for _ in range(60):  # on until the half stage has selected its devices
        world.run(5)
        if world.status().rollout.stage_index == 1 and len(world.ops.repo.devices(ro.id)) == 5:
            break
    world.run(40)  # the half stage's devices report a window's samples
    adapter = FleetAdapter(world.store, None, None, EventBuffer(), FigureBuffer())
    view = adapter.rollout(ro.id)
    assert view is not None and view.stage == 1, view
    assert [s.name for s in view.stages] == ["canary", "half", "all"]
    assert sum(view.stages[0].by_state.values()) == 1
    assert sum(view.stages[1].by_state.values()) == 4  # half of ten, less the canary already on it
    assert view.stages[2].by_state == {}
    status = world.status()
    assert view.last_reason == status.rollout.last_reason and view.last_reason
    latency = next(g for g in view.gates if g.metric == "e2e_ms_p95")
    # One figure per device with enough samples in the window: the canaries on v2, the control on v1.
    assert 1 <= len(latency.canary_values) <= 5 and 1 <= len(latency.control_values) <= 5
    assert all(v > 0 for v in latency.canary_values + latency.control_values)


def test_rows_follow_the_registry_though_only_changed_devices_are_read_again(world: World) -> None:
    adapter = FleetAdapter(world.store, None, None, EventBuffer(), FigureBuffer())
    before = {r.device_id: r for r in adapter.devices()}
    assert len(before) == 10 and {r.status for r in before.values()} == {"online"}
    world.store.devices.update("cam-001", lambda r: replace(r, model_version=9))
    world.store.devices.assign("cam-002", "roof", world.clock())
    world.store.remove_device("cam-003")
    rows = {r.device_id: r for r in adapter.devices()}
    assert "cam-003" not in rows and len(rows) == 9
    assert rows["cam-001"].model_version == 9 and "roof" in rows["cam-002"].groups
    assert rows["cam-000"] == before["cam-000"]
    world.clock.now_ms += 10 * 60 * 1000  # ten silent minutes, no write at all: every device is stale now
    assert {r.status for r in adapter.devices()} == {"stale"}
