"""The registry's pure message logic, and the ingest turning messages into records (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleet.db.store import FleetStore
from fleet.ingest import Ingest, route, subscriptions
from fleet.registry import (
    DeviceRecord,
    apply_state,
    apply_status,
    apply_telemetry,
    effective_status,
    new_record,
    telemetry_sample,
)
from shared.payloads import StatePayload, TelemetryPayload
from tests.fleet.conftest import Clock

T0 = 1_700_000_000_000


def state(boot: str = "b1", ts: int = T0, version: int = 3, **kw: Any) -> StatePayload:
    return StatePayload(device_id=kw.pop("device_id", "cam-1"), boot_id=boot, seq=0, ts=ts, agent_version="0.1.0",
                        model={"name": "digits", "version": version, "variant": "model.int8.onnx",
                               "backend": "onnxruntime"},
                        hardware={"cpu": "x86"}, config_digest="abc", **kw)


def telemetry(boot: str = "b1", ts: int = T0, replayed: bool = False, **figures: Any) -> TelemetryPayload:
    return TelemetryPayload(device_id="cam-1", boot_id=boot, seq=1, ts=ts, replayed=replayed, **figures)


def test_status_and_staleness_follow_the_telemetry_interval() -> None:
    rec = apply_status(new_record("lab", "cam-1"), "online", T0, retained=False)
    rec = apply_state(rec, state(telemetry_interval_s=2.0, groups=["north"]), T0, retained=False)
    assert effective_status(rec, T0 + 6000) == "online"
    assert effective_status(rec, T0 + 6001) == "stale"  # 3 intervals of 2 s
    rec = apply_telemetry(rec, telemetry(ts=T0 + 7000, fps=9.0), T0 + 7000)
    assert effective_status(rec, T0 + 8000) == "online"
    assert effective_status(apply_status(rec, "offline", T0 + 9000, False), T0 + 9000) == "offline"
    assert effective_status(new_record("lab", "x"), T0) == "unknown"
    with pytest.raises(ValueError, match="not one of online"):
        apply_status(rec, "maybe", T0, False)


def test_a_retained_message_does_not_make_a_device_look_alive() -> None:
    rec = apply_status(new_record("lab", "cam-1"), "online", T0, retained=True)
    assert rec.last_seen_ms is None and effective_status(rec, T0) == "stale"
    rec = apply_state(rec, state(ts=T0 - 60_000), T0, retained=True)  # published a minute ago
    assert rec.last_seen_ms == T0 - 60_000 and effective_status(rec, T0) == "stale"


def test_a_new_boot_is_one_restart_and_old_or_replayed_messages_change_nothing() -> None:
    rec = apply_state(new_record("lab", "cam-1"), state("b1", T0), T0, False)
    rec = apply_telemetry(rec, telemetry("b1", T0 + 1000), T0 + 1000)
    assert rec.restarts == 0
    rec = apply_state(rec, state("b2", T0 + 5000), T0 + 5000, False)
    assert (rec.boot_id, rec.restarts) == ("b2", 1)
    rec = apply_state(rec, state("b2", T0 + 5000), T0 + 6000, True)  # the same retained state again
    rec = apply_telemetry(rec, telemetry("b1", T0 + 2000, replayed=True), T0 + 6000)  # outbox replay of boot 1
    rec = apply_telemetry(rec, telemetry("b1", T0 + 1500), T0 + 6000)  # a late message of boot 1
    assert (rec.boot_id, rec.restarts) == ("b2", 1)
    rec = apply_telemetry(rec, telemetry("b3", T0 + 9000), T0 + 9000)
    assert (rec.boot_id, rec.restarts) == ("b3", 2)


def test_state_sets_what_the_device_runs_and_its_groups() -> None:
    rec = apply_state(new_record("lab", "cam-1"), state(version=4, groups=["south", "north"]), T0, False)
    assert (rec.model_name, rec.model_version, rec.model_backend) == ("digits", 4, "onnxruntime")
    assert rec.groups == ("north", "south") and rec.hardware == {"cpu": "x86"}


def test_telemetry_sample_keeps_figures_and_class_counts() -> None:
    s = telemetry_sample(telemetry(fps=12.5, e2e_ms_p95=30, class_counts={"3": 4, "7": 1}))
    assert s.figures == {"fps": 12.5, "e2e_ms_p95": 30.0}
    assert s.class_counts == {"3": 4, "7": 1}


def test_routes_and_subscriptions() -> None:
    assert route("edgeferry/lab/cam-1/telemetry", "lab") is not None
    assert route("edgeferry/lab/cam-1/cmd/deploy/reply", "lab").kind == "reply"  # type: ignore[union-attr]
    assert route("edgeferry/other/cam-1/telemetry", "lab") is None
    assert route("edgeferry/lab/cam-1/cmd/deploy", "lab") is None
    assert route("edgeferry/lab/bad id/state", "lab") is None
    assert "$share/g1/edgeferry/lab/+/telemetry" in subscriptions("lab", "g1")
    assert "edgeferry/lab/+/status" in subscriptions("lab", "g1")


def test_ingest_builds_records_and_refuses_bad_messages(tmp_path: Path) -> None:
    clock = Clock(T0)
    store = FleetStore.open(f"sqlite:///{tmp_path}/f.sqlite", "lab", clock=clock)
    ingest = Ingest(store)
    base = "edgeferry/lab/cam-1"
    ingest.offer(f"{base}/status", b"online", True)
    ingest.offer(f"{base}/state", state(groups=["north"]).model_dump_json().encode(), False)
    for i in range(3):
        ingest.offer(f"{base}/telemetry", telemetry(ts=T0 + i, fps=float(i)).model_dump_json().encode(), False)
    ingest.offer(f"{base}/telemetry", b"{not json", False)
    ingest.offer(f"{base}/telemetry", json.dumps({"device_id": "cam-2", "boot_id": "b", "seq": 1, "ts": 1}).encode(),
                 False)
    ingest.offer(f"{base}/status", b"weird", False)
    assert ingest.drain() == 8
    rec = store.device("cam-1")
    assert isinstance(rec, DeviceRecord)
    assert (rec.status, rec.groups, rec.model_version) == ("online", ("north",), 3)
    assert [s.figures["fps"] for s in store.telemetry_window("cam-1", T0, T0 + 10)] == [0.0, 1.0, 2.0]
    assert ingest.stats.accepted == {"status": 1, "state": 1, "telemetry": 3}
    assert ingest.stats.rejected == {"telemetry": 2, "status": 1}
    assert "cam-2" in (ingest.stats.last_reject or "") or "weird" in (ingest.stats.last_reject or "")
    store.close()
