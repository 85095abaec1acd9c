"""What the web app keeps of a detector (no sockets): the latest snapshot per known device within a byte budget,
object events newest first, zone counts as chart columns, objects in zones with their entry time, hostile input
refused whole; and the device page's detection reads over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dashboards.errors import Refused
from dashboards.web.app import create_app
from dashboards.web.objects import ObjectBuffer, objects_per_min
from dashboards.web.telemetry_report import parse_telemetry
from shared.object_events import MAX_SNAPSHOT_BYTES
from tests.dashboards.web.conftest import OPERATOR, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet
from tests.dashboards.web.object_payloads import NOW, Detector
from tests.dashboards.web.test_api import login

BOX = (108.0, 58.0, 132.0, 82.0)
CROP = (100.0, 50.0, 140.0, 90.0)


def test_latest_snapshot_per_device_only_for_devices_the_registry_knows() -> None:
    objects = ObjectBuffer(known=lambda d: d == "det-1")
    det, stranger = Detector("det-1"), Detector("who-9")
    objects.add_snapshot("det-1", "1-1", det.snapshot("1-1", "person", BOX, CROP, (40, 40)))
    objects.add_snapshot("det-1", "1-2", det.snapshot("1-2", "car", BOX, CROP, (40, 40)))
    objects.add_snapshot("who-9", "1-1", stranger.snapshot("1-1", "person", BOX, CROP, (40, 40)))
    objects.add_event("who-9", stranger.event("new", "1-1", "person", NOW, ["yard"]))
    snap = objects.snapshot("det-1")
    assert snap is not None and (snap.object_id, snap.label, snap.box, snap.crop) == ("1-2", "car", BOX, CROP)
    assert base64.b64decode(snap.jpeg).startswith(b"\xff\xd8")
    assert objects.snapshot("who-9") is None and objects.events("who-9", 10) == [] and objects.occupants() == []
    assert objects.not_known == 2


def test_snapshots_beyond_the_byte_budget_drop_the_least_recently_updated_device() -> None:
    one = len(json.loads(Detector("x").snapshot("1-1", "a", BOX, CROP, (40, 40)))["jpeg"])
    objects = ObjectBuffer(snapshot_budget_bytes=int(2.5 * one))
    for name in ("a", "b", "c"):
        objects.add_snapshot(name, "1-1", Detector(name).snapshot("1-1", "person", BOX, CROP, (40, 40)))
    assert objects.snapshot("a") is None
    assert objects.snapshot("b") is not None and objects.snapshot("c") is not None


@pytest.mark.parametrize(("topic_device", "topic_object", "why"), [
    ("det-1", "9-9", "names '1-1'"),  # on another object's topic
    ("det-2", "1-1", "names device 'det-1'"),  # on another device's topic
])
def test_a_snapshot_claiming_another_object_or_device_is_refused(topic_device: str, topic_object: str,
                                                                 why: str) -> None:
    objects = ObjectBuffer()
    with pytest.raises(Refused, match=why):
        objects.add_snapshot(topic_device, topic_object, Detector("det-1").snapshot("1-1", "p", BOX, CROP, (40, 40)))
    assert objects.snapshot(topic_device) is None


def test_an_oversized_or_non_jpeg_snapshot_is_refused_and_nothing_kept() -> None:
    objects = ObjectBuffer()
    good = json.loads(Detector("det-1").snapshot("1-1", "person", BOX, CROP, (40, 40)))
    huge = {**good, "jpeg": base64.b64encode(b"\xff\xd8" + b"\0" * MAX_SNAPSHOT_BYTES).decode()}
    png = {**good, "jpeg": base64.b64encode(b"\x89PNG....").decode()}
    for bad in (huge, png, {**good, "box": [0, 0, float("1e300"), 1]}):
        with pytest.raises(Refused, match="not a snapshot payload"):
            objects.add_snapshot("det-1", "1-1", json.dumps(bad).encode())
    assert objects.snapshot("det-1") is None


def test_zone_counts_become_chart_columns_that_only_run_forward() -> None:
    objects, det = ObjectBuffer(), Detector("det-1")
    for ts, zones, extra in [(NOW, {"bottom": 0, "left": 0}, {"fps": 10.0}),
                             (NOW + 1000, {"bottom": 1, "bottom/person": 1, "left": 0}, {}),
                             (NOW + 500, {"bottom": 7, "left": 7}, {}),  # late: not drawn back
                             (NOW + 2000, None, {"fps": 10.0})]:  # a report without zones
        objects.add_report("det-1", parse_telemetry(det.telemetry(ts, zones, **extra), "det-1"))
    z = objects.zones("det-1")
    assert z.ts_ms == [NOW, NOW + 1000]
    assert z.series == {"bottom": [0, 1], "bottom/person": [None, 1], "left": [0, 0]}
    assert objects.zones("det-1", since_ms=NOW + 1).ts_ms == [NOW + 1000]


def test_object_events_newest_first_and_objects_in_zones_keep_their_entry_time() -> None:
    objects, det = ObjectBuffer(per_device=3), Detector("det-1")
    objects.add_event("det-1", det.event("new", "1-1", "person", NOW, ["yard"]))
    objects.add_event("det-1", det.event("update", "1-1", "person", NOW + 4000, ["yard", "door"]))
    objects.add_event("det-1", det.event("new", "1-2", "car", NOW + 5000, []))
    [a, b] = sorted(objects.occupants(), key=lambda o: o.zone)
    assert (a.zone, a.since_ms, b.zone, b.since_ms) == ("door", NOW + 4000, "yard", NOW)
    objects.add_event("det-1", det.event("update", "1-1", "person", NOW + 6000, ["door"]))
    assert [(o.zone, o.since_ms) for o in objects.occupants()] == [("door", NOW + 4000)]
    objects.add_event("det-1", det.event("end", "1-1", "person", NOW + 7000, ["door"]))
    assert objects.occupants() == []
    rows = objects.events("det-1", 10)
    assert [(r.type, r.object_id) for r in rows] == [("end", "1-1"), ("update", "1-1"), ("new", "1-2")]


def test_an_object_event_that_is_not_one_is_refused() -> None:
    objects = ObjectBuffer()
    for bad in (b"{}", b"[" * 100_000, json.dumps({"type": "new"}).encode()):
        with pytest.raises(Refused):
            objects.add_event("det-1", bad)
    assert objects.events("det-1", 10) == []


def test_objects_per_minute_from_the_metric_tables_figures() -> None:
    assert objects_per_min({"fps": 10.0, "det_objects_per_frame": 1.5}) == 900.0
    assert objects_per_min({"fps": 10.0}) is None  # a classifier reports no detections


@pytest.fixture
def client(fleet: FakeFleet) -> Iterator[tuple[TestClient, ObjectBuffer]]:
    objects = ObjectBuffer()
    with TestClient(create_app(web_config(), fleet, fleet, objects=objects)) as c:
        yield c, objects


def test_device_page_reads_over_http(client: tuple[TestClient, ObjectBuffer]) -> None:
    c, objects = client
    assert c.get("/api/devices/cam-0/objects/snapshot").status_code == 401
    login(c, VIEWER)
    assert c.get("/api/devices/cam-0/objects/snapshot").json() is None
    det = Detector("cam-0")
    objects.add_snapshot("cam-0", "1-1", det.snapshot("1-1", "person", BOX, CROP, (40, 40)))
    objects.add_event("cam-0", det.event("new", "1-1", "person", NOW, ["yard"]))
    objects.add_report("cam-0", parse_telemetry(det.telemetry(NOW, {"yard": 1, "yard/person": 1}), "cam-0"))
    assert c.get("/api/devices/cam-0/objects/snapshot").json()["box"] == list(BOX)
    assert [e["type"] for e in c.get("/api/devices/cam-0/objects/events").json()] == ["new"]
    assert c.get("/api/devices/cam-0/objects/zones").json()["series"] == {"yard": [1], "yard/person": [1]}
    r = c.get("/api/devices/nope/objects/events")
    assert r.status_code == 404 and "no device 'nope'" in r.json()["error"]


def test_removing_a_device_forgets_its_objects(client: tuple[TestClient, ObjectBuffer]) -> None:
    c, objects = client
    csrf = login(c, OPERATOR)
    det = Detector("cam-1")
    objects.add_snapshot("cam-1", "1-1", det.snapshot("1-1", "person", BOX, CROP, (40, 40)))
    objects.add_event("cam-1", det.event("new", "1-1", "person", NOW, ["yard"]))
    assert c.delete("/api/devices/cam-1", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert objects.snapshot("cam-1") is None and objects.events("cam-1", 10) == [] and objects.occupants() == []
