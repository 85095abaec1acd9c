"""The web API as a script or a browser session uses it: auth, roles, CSRF, audit, bad input, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from tests.dashboards.web.conftest import OPERATOR, TOKEN, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet


@pytest.fixture
def client(fleet: FakeFleet) -> Iterator[TestClient]:
    with TestClient(create_app(web_config(), fleet, fleet)) as c:
        yield c


def login(client: TestClient, who: tuple[str, str]) -> str:
    """Sign in; returns the session's CSRF token."""
    r = client.post("/login", data={"username": who[0], "password": who[1]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    return str(client.get("/api/me").json()["csrf"])


def test_signed_out_gets_login_and_401(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = client.get("/api/devices")
    assert r.status_code == 401 and "sign in" in r.json()["error"]


def test_wrong_password_is_refused(client: TestClient) -> None:
    r = client.post("/login", data={"username": OPERATOR[0], "password": "nope"}, follow_redirects=False)
    assert r.headers["location"] == "/login?failed=1"
    assert client.get("/api/me").status_code == 401


def test_session_cookie_is_httponly_and_samesite_strict(client: TestClient) -> None:
    r = client.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1]}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_operator_acts_with_csrf_and_is_audited(client: TestClient, fleet: FakeFleet) -> None:
    csrf = login(client, OPERATOR)
    r = client.post("/api/devices/cam-1/ping", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert fleet.sent == [("ping", "cam-1", None)]
    assert [(a.user, a.action, a.target, a.ok) for a in fleet.audits] == [("olga", "ping", "cam-1", True)]


def test_action_without_csrf_token_changes_nothing(client: TestClient, fleet: FakeFleet) -> None:
    login(client, OPERATOR)
    r = client.post("/api/devices/cam-1/deploy", json={"version": 2})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post("/api/devices/cam-1/deploy", json={"version": 2}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert fleet.sent == []
    assert [a.ok for a in fleet.audits] == [False, False]


def test_viewer_cannot_act(client: TestClient, fleet: FakeFleet) -> None:
    csrf = login(client, VIEWER)
    assert client.get("/api/devices").status_code == 200
    r = client.post("/api/devices/cam-1/rollback", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "operator role" in r.json()["error"]
    assert fleet.sent == []
    assert fleet.audits[-1].user == "victor" and not fleet.audits[-1].ok


def test_api_token_acts_without_csrf(client: TestClient, fleet: FakeFleet) -> None:
    r = client.post("/api/devices/cam-2/deploy", json={"version": 3}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert fleet.sent == [("deploy", "cam-2", 3)]
    assert fleet.audits[-1].user == "ci-script"
    r = client.get("/api/devices", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/devices/ghost/ping", None, 404, "no device 'ghost'"),
        ("/api/devices/cam-1/deploy", {"version": 9}, 400, "no version 9"),
        ("/api/devices/cam-1/deploy", {"version": "two"}, 400, "bad request: version"),
        ("/api/devices/cam-1/deploy", {"version": 2, "force": True}, 400, "bad request: force"),
        ("/api/devices/cam-1/deploy", {}, 400, "bad request: version: Field required"),
        ("/api/rollouts/r404/pause", None, 404, "no rollout 'r404'"),
        ("/api/rollouts", {"model": "digits", "version": 2, "group": "empty"}, 400, "has no devices"),
    ],
)
def test_bad_input_is_one_clear_error_and_no_change(
    client: TestClient, fleet: FakeFleet, path: str, body: object, status: int, words: str
) -> None:
    csrf = login(client, OPERATOR)
    r = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == status
    assert words in r.json()["error"]
    assert fleet.sent == [] and fleet.rollouts() == []


def test_unknown_device_and_rollout_reads_are_404(client: TestClient) -> None:
    login(client, VIEWER)
    assert client.get("/api/devices/ghost").json() == {"error": "no device 'ghost' in fleet 'lab'"}
    assert client.get("/api/devices/../etc").status_code == 404
    assert client.get("/api/rollouts/nope").status_code == 404


def test_rollout_lifecycle_and_finished_rollout_refuses(client: TestClient, fleet: FakeFleet) -> None:
    csrf = login(client, OPERATOR)
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/rollouts", json={"model": "digits", "version": 2, "group": "lab"}, headers=h)
    assert r.status_code == 200, r.text
    rid = r.json()["target"]
    assert client.post(f"/api/rollouts/{rid}/pause", headers=h).status_code == 200
    assert client.get(f"/api/rollouts/{rid}").json()["state"] == "paused"
    again = client.post("/api/rollouts", json={"model": "digits", "version": 3, "group": "lab"}, headers=h)
    assert again.status_code == 409 and "already has a rollout" in again.json()["error"]
    assert client.post(f"/api/rollouts/{rid}/abort", headers=h).status_code == 200
    before = client.get(f"/api/rollouts/{rid}").json()
    r = client.post(f"/api/rollouts/{rid}/resume", headers=h)
    assert r.status_code == 409 and "aborted" in r.json()["error"]
    assert client.get(f"/api/rollouts/{rid}").json() == before
    actions = [(a.action, a.ok) for a in fleet.audits]
    assert actions == [("rollout.start", True), ("rollout.pause", True), ("rollout.start", False),
                       ("rollout.abort", True), ("rollout.resume", False)]
    decisions = before["decisions"]
    assert [d["by"] for d in decisions[1:]] == ["olga", "olga"]


def test_filters_and_history(client: TestClient, fleet: FakeFleet) -> None:
    login(client, VIEWER)
    fleet.telemetry("cam-0", {"fps": 10.0, "e2e_ms_p95": 4.0})
    fleet.telemetry("cam-0", {"fps": 11.0, "e2e_ms_p95": 5.0})
    assert [d["device_id"] for d in client.get("/api/devices?group=yard").json()] == ["yard-0"]
    hist = client.get("/api/devices/cam-0/history").json()
    assert [s["values"]["fps"] for s in hist] == [10.0, 11.0]
    assert client.get("/api/devices/cam-0/history?since_ms=10&until_ms=5").status_code == 400


def test_openapi_schema_lists_the_api(client: TestClient) -> None:
    login(client, VIEWER)  # the schema is behind sign-in like the rest of the API
    paths = client.get("/api/openapi.json").json()["paths"]
    for p in ("/api/devices", "/api/devices/{device_id}/history", "/api/rollouts/{rollout_id}",
              "/api/rollouts/{rollout_id}/{action}", "/api/alerts", "/api/live"):
        assert p in paths


def test_pages_carry_a_content_security_policy_without_external_sources(client: TestClient) -> None:
    login(client, VIEWER)
    r = client.get("/")
    assert r.status_code == 200 and "<table id=\"devices\">" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "http" not in r.text.replace("http-equiv", "")
