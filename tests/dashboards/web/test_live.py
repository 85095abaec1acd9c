"""The live channel's batches: only changed rows, counts when they change, nothing when nothing changed."""

from __future__ import annotations

import asyncio
import json

from dashboards.web.alerts import Alert
from dashboards.web.live import LiveDiff, LiveHub, counts
from dashboards.web.ports import DeviceRow
from tests.dashboards.web.fakes import FakeFleet


def rows(n: int, fps: float = 10.0) -> list[DeviceRow]:
    return [DeviceRow(device_id=f"d{i}", fleet="lab", status="online", model_name="m", model_version=1, fps=fps)
            for i in range(n)]


def test_second_batch_carries_only_the_changed_rows() -> None:
    diff = LiveDiff()
    first = diff.step(rows(1000), [], [])
    assert first is not None and len(first["devices"]) == 1000
    assert first["counts"] == {"status": {"online": 1000}, "version": {"m v1": 1000}}
    assert diff.step(rows(1000), [], []) is None
    changed = rows(1000)
    changed[7] = changed[7].model_copy(update={"fps": 3.0, "status": "stale"})
    delta = diff.step(changed[:-1], [], [])
    assert delta is not None
    assert [d["device_id"] for d in delta["devices"]] == ["d7"] and delta["removed"] == ["d999"]
    assert delta["counts"]["status"] == {"online": 998, "stale": 1}
    snap = diff.snapshot()
    assert snap["type"] == "snapshot" and len(snap["devices"]) == 999


def test_alerts_are_sent_when_they_change() -> None:
    diff = LiveDiff()
    diff.step(rows(2), [], [])
    delta = diff.step(rows(2), [], [Alert("slow", "d1", "metric", "e2e_ms_p95 = 80 ms (> 50)", 80.0, 50.0)])
    assert delta is not None and delta["devices"] == [] and delta["alerts"][0]["device_id"] == "d1"


def test_counts_by_version_name_devices_without_a_model() -> None:
    r = [*rows(2), DeviceRow(device_id="x", fleet="lab", status="offline")]
    assert counts(r) == {"status": {"online": 2, "offline": 1}, "version": {"m v1": 2, "none": 1}}


def test_stream_starts_with_a_snapshot_then_batches_changes() -> None:
    fleet = FakeFleet()
    fleet.add_device("cam-0")

    async def run() -> list[dict[str, object]]:
        hub = LiveHub(fleet, 0.05, [])
        await hub.start()
        stream = hub.stream()
        got = [json.loads((await anext(stream))[len("data: "):])]
        fleet.add_device("cam-1")
        fleet.telemetry("cam-1", {"fps": 5.0})
        got.append(json.loads((await asyncio.wait_for(anext(stream), 5))[len("data: "):]))
        await stream.aclose()
        await hub.stop()
        return got

    snapshot, delta = asyncio.run(run())
    assert snapshot["type"] == "snapshot" and [d["device_id"] for d in snapshot["devices"]] == ["cam-0"]  # type: ignore[index]
    assert delta["type"] == "delta" and [d["device_id"] for d in delta["devices"]] == ["cam-1"]  # type: ignore[index]
