"""The fleet page's shared snapshot: worst devices first, counts over the whole fleet, pages, a bounded trend, and
the live channel carrying the summary instead of 10,000 rows to the fleet page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from dashboards.web.live import LiveHub
from dashboards.web.ports import DeviceRow
from dashboards.web.snapshot import TREND_POINTS, FleetSnapshot, Trend, condition
from tests.dashboards.web.conftest import TOKEN, web_config
from tests.dashboards.web.fakes import FakeFleet

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def row(i: int, **over: object) -> DeviceRow:
    base: dict[str, object] = {"device_id": f"d{i:05d}", "fleet": "lab", "status": "online", "model_name": "m",
                               "model_version": 1, "groups": ["lab"]}
    return DeviceRow.model_validate(base | over)


def test_rows_are_ordered_worst_first_and_paged() -> None:
    rows = [row(i) for i in range(10_000)]
    rows[9000] = row(9000, status="stale")
    rows[5] = row(5, desired_version=2)
    rows[7000] = row(7000, status="offline")
    rows[8000] = row(8000, shed=3)
    snap = FleetSnapshot(rows, 1)
    total, page = snap.page(0, 5)
    assert total == 10_000
    assert [(r["device_id"], r["condition"]) for r in page] == [
        ("d08000", "misbehaving"), ("d07000", "offline"), ("d09000", "stale"), ("d00005", "updating"),
        ("d00000", "ok")]
    total, page = snap.page(9_998, 100)
    assert [r["device_id"] for r in page] == ["d09998", "d09999"]
    assert snap.page(0, 10, status="offline") == (1, [snap.row_json(rows[7000])])
    total, page = snap.page(0, 3, sort="device_id", desc=True)
    assert [r["device_id"] for r in page] == ["d09999", "d09998", "d09997"]
    assert snap.page(0, 100, text="d0999")[0] == 10
    counts = snap.summary()["counts"]
    assert counts["status"] == {"online": 9998, "stale": 1, "offline": 1}
    assert counts["convergence"] == {"unmanaged": 9999, "updating": 1}
    assert counts["condition"]["misbehaving"] == 1


def test_condition_names_what_to_look_at_first() -> None:
    assert condition(row(0, status="offline", refused=1)) == "misbehaving"
    assert condition(row(0, status="stopped", desired_version=3)) == "stopped"
    assert condition(row(0, desired_version=1)) == "ok"


def test_trend_keeps_one_point_per_step_and_stays_bounded() -> None:
    trend = Trend(step_ms=1000)
    for t in range(0, 5_000_000, 500):
        trend.add(t, {"online": t})
    cols = trend.columns()
    assert len(cols["ts"]) == TREND_POINTS
    assert cols["ts"][-1] == 4999 and cols["online"][-1] == 4_999_500  # the last point follows the newest tick
    assert cols["ts"][-2] == 4998 and cols["stale"] == [0] * TREND_POINTS


def test_summary_and_page_endpoints_read_the_snapshot() -> None:
    fleet = FakeFleet()
    for i in range(300):
        fleet.add_device(f"cam-{i:03d}", ["lab" if i % 2 else "yard"])
    fleet.set_status("cam-123", "offline")
    with TestClient(create_app(web_config(), fleet, fleet)) as client:
        summary = client.get("/api/fleet/summary", headers=BEARER).json()
        assert summary["total"] == 300 and summary["counts"]["status"] == {"online": 299, "offline": 1}
        assert summary["counts"]["group"] == {"lab": 150, "yard": 150}
        assert len(summary["trend"]["ts"]) == 1 and summary["trend"]["offline"] == [1]
        r = client.get("/api/fleet/devices?limit=2&offset=0", headers=BEARER)
        assert r.headers["x-total-count"] == "300"
        assert [d["device_id"] for d in r.json()] == ["cam-123", "cam-000"]
        r = client.get("/api/fleet/devices?group=yard&q=cam-12&limit=100", headers=BEARER)
        assert r.headers["x-total-count"] == "5"  # the even ones of cam-120..cam-129 are in yard
        assert client.get("/api/fleet/devices?sort=password", headers=BEARER).status_code == 400
        assert client.get("/api/fleet/summary").status_code == 401


def test_fleet_page_stream_carries_the_summary_not_the_rows() -> None:
    fleet = FakeFleet()
    for i in range(50):
        fleet.add_device(f"cam-{i}")

    async def run() -> list[Any]:
        hub = LiveHub(fleet, 0.05, [])
        await hub.start()
        stream: Any = hub.stream(rows="none")
        one: Any = hub.stream(rows="device:cam-7")
        got = [json.loads((await anext(stream))[len("data: "):]), json.loads((await anext(one))[len("data: "):])]
        fleet.set_status("cam-3", "offline")
        got.append(json.loads((await asyncio.wait_for(anext(stream), 5))[len("data: "):]))
        fleet.telemetry("cam-7", {"fps": 5.0})
        got.append(json.loads((await asyncio.wait_for(anext(one), 5))[len("data: "):]))
        await stream.aclose()
        await one.aclose()
        await hub.stop()
        return got

    snapshot, device_snapshot, delta, device_delta = asyncio.run(run())
    assert "devices" not in snapshot and snapshot["summary"]["total"] == 50
    assert [d["device_id"] for d in device_snapshot["devices"]] == ["cam-7"]
    assert "devices" not in delta and delta["summary"]["counts"]["status"] == {
        "online": 49, "offline": 1}
    assert [d["device_id"] for d in device_delta["devices"]] == ["cam-7"]


def test_fleet_page_arrives_with_its_first_page_and_summary_escaped_for_html() -> None:
    fleet = FakeFleet()
    for i in range(150):
        fleet.add_device(f"cam-{i:03d}", ["lab"])
    fleet.add_device("cam-x", ["</script><script>alert(1)</script>"])
    with TestClient(create_app(web_config(), fleet, fleet)) as client:
        assert client.get("/", follow_redirects=False).status_code == 303  # signed out: no data in the page
        client.post("/login", data={"username": "victor", "password": "viewer-pass"}, follow_redirects=False)
        html = client.get("/").text
    block = html.split('<script type="application/json" id="initial">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block
    initial = json.loads(block)
    assert initial["me"]["name"] == "victor" and initial["summary"]["total"] == 151
    assert initial["page"]["total"] == 151 and len(initial["page"]["rows"]) == 100
    assert "</script><script>alert(1)</script>" in initial["summary"]["counts"]["group"]
