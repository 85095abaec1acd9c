"""/api/devices for a large fleet (pages with a total), misbehaving devices, and removing a device."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from tests.dashboards.web.conftest import OPERATOR, TOKEN, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(fleet: FakeFleet) -> Iterator[TestClient]:
    with TestClient(create_app(web_config(), fleet, fleet)) as c:
        yield c


def login(client: TestClient, who: tuple[str, str]) -> str:
    r = client.post("/login", data={"username": who[0], "password": who[1]}, follow_redirects=False)
    assert r.status_code == 303
    return str(client.get("/api/me").json()["csrf"])


def test_devices_come_in_pages_with_a_total(client: TestClient, fleet: FakeFleet) -> None:
    for i in range(1200):
        fleet.add_device(f"fake-{i:04d}", ["flood"])
    r = client.get("/api/devices", headers=BEARER)
    assert r.status_code == 200
    assert len(r.json()) == 500 and r.headers["x-total-count"] == "1204"
    ids: list[str] = []
    for offset in range(0, 1204, 500):
        page = client.get(f"/api/devices?limit=500&offset={offset}", headers=BEARER).json()
        ids += [d["device_id"] for d in page]
    assert len(ids) == 1204 and len(set(ids)) == 1204 and ids == sorted(ids)
    r = client.get("/api/devices?group=lab&limit=2&offset=1", headers=BEARER)
    assert [d["device_id"] for d in r.json()] == ["cam-1", "cam-2"] and r.headers["x-total-count"] == "3"
    assert client.get("/api/devices?limit=100000", headers=BEARER).status_code == 400


def test_misbehaving_device_shows_its_refused_and_shed_counts(client: TestClient, fleet: FakeFleet) -> None:
    fleet.misbehave("cam-2", refused=7, shed=3)
    rows = {d["device_id"]: d for d in client.get("/api/devices", headers=BEARER).json()}
    assert (rows["cam-2"]["refused"], rows["cam-2"]["shed"]) == (7, 3)
    assert (rows["cam-1"]["refused"], rows["cam-1"]["shed"]) == (0, 0)
    assert client.get("/api/devices/cam-2", headers=BEARER).json()["row"]["refused"] == 7


def test_operator_removes_a_device_with_csrf_and_audit(client: TestClient, fleet: FakeFleet) -> None:
    csrf = login(client, OPERATOR)
    r = client.delete("/api/devices/cam-1")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert client.get("/api/devices/cam-1").status_code == 200
    r = client.delete("/api/devices/cam-1", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert client.get("/api/devices/cam-1").status_code == 404
    assert [(a.user, a.action, a.target, a.ok) for a in fleet.audits] == [
        ("olga", "device.remove", "cam-1", False), ("olga", "device.remove", "cam-1", True)]
    assert client.delete("/api/devices/cam-1", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_viewer_cannot_remove_a_device(client: TestClient, fleet: FakeFleet) -> None:
    csrf = login(client, VIEWER)
    r = client.delete("/api/devices/cam-0", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "operator role" in r.json()["error"]
    assert client.get("/api/devices/cam-0").status_code == 200
    assert fleet.sent == [] and fleet.audits[-1].user == "victor" and not fleet.audits[-1].ok
