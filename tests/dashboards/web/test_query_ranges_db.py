"""Out-of-range and hostile query and path parameters over the real control-plane store (SQLite and PostgreSQL):
one clear 400 or 404, never a 500 with a traceback."""

from __future__ import annotations

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
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.fixtures.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
BIG = 2**63 - 1


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path}/fleet.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = FleetStore.open(str(url), "lab")
    now = store.clock()
    store.devices.update("cam-0", lambda r: replace(r, reported_status="online", last_seen_ms=now))
    adapter = FleetAdapter(store, None, None, EventBuffer(), FigureBuffer())
    try:
        with TestClient(create_app(web_config(), adapter, adapter), raise_server_exceptions=False) as c:
            r = c.post("/login", data={"username": VIEWER[0], "password": VIEWER[1]}, follow_redirects=False)
            assert r.headers["location"] == "/"
            yield c
    finally:
        store.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/devices/cam-0/history?until_ms={BIG}", 400),
        (f"/api/devices/cam-0/history?since_ms={BIG - 1}&until_ms={BIG}", 400),
        ("/api/devices/cam-0/history?until_ms=5", 200),
        ("/api/rollouts/%00", 404),
        ("/api/rollouts/" + "r" * 300, 404),
        ("/api/devices/cam%00", 404),
    ],
)
def test_hostile_parameters_on_a_real_store_answer_clearly(client: TestClient, path: str, status: int) -> None:
    r = client.get(path)
    assert r.status_code == status, (path, r.text[:300])
    if status != 200:
        assert "\n" not in r.json()["error"] and "Traceback" not in r.text


def test_a_hostile_rollout_id_in_an_action_changes_nothing_and_is_refused(client: TestClient) -> None:
    client.cookies.clear()
    r = client.post("/api/rollouts/%00/pause", headers={"Authorization": "Bearer script-token-0123456789"})
    assert r.status_code == 404, r.text[:300]


def test_a_hostile_user_name_is_throttled_and_audited_without_breaking_the_audit_log(client: TestClient) -> None:
    name = "mallory\x00\x1b"
    statuses = [client.post("/login", data={"username": name, "password": "guess"}, follow_redirects=False).status_code
                for _ in range(6)]
    assert statuses == [303] * 5 + [429]
    audit = client.get("/api/audit").json()
    assert audit[0]["action"] == "login.throttled" and audit[0]["user"].startswith("'mallory\\x00")
