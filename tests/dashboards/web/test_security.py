"""The web app against a hostile client: foreign Host headers, redirects, sign-out without CSRF, the OpenAPI schema
and docs signed out, cookies behind TLS or a proxy, and out-of-range query parameters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dashboards.web.app import create_app
from tests.dashboards.web.conftest import OPERATOR, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet


@pytest.fixture
def client(fleet: FakeFleet) -> Iterator[TestClient]:
    with TestClient(create_app(web_config(), fleet, fleet)) as c:
        yield c


def login(client: TestClient, who: tuple[str, str]) -> str:
    """Sign in; returns the session's CSRF token."""
    r = client.post("/login", data={"username": who[0], "password": who[1]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return str(client.get("/api/me").json()["csrf"])


# ---- hosts and redirects ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/devices/", "/api/devices", "/", "/login"])
def test_a_foreign_host_header_gets_400_and_never_a_redirect_to_it(client: TestClient, path: str) -> None:
    r = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "evil.example" in r.json()["error"] and "allowed_hosts" in r.json()["error"]


def test_redirects_stay_on_the_host_the_request_reached(client: TestClient) -> None:
    login(client, VIEWER)
    r = client.get("/api/devices/", follow_redirects=False)
    assert r.status_code in (301, 307, 308)
    assert r.headers["location"] == "/api/devices"
    r = client.get("//evil.example/", follow_redirects=False)
    assert not r.headers.get("location", "/").startswith("//")


def test_default_hosts_are_the_bind_address_loopback_and_the_public_url(fleet: FakeFleet) -> None:
    cfg = web_config(allowed_hosts=None, host="10.1.2.3", public_url="https://fleet.example.com/")
    assert cfg.served_hosts() == ["10.1.2.3", "localhost", "127.0.0.1", "::1", "fleet.example.com"]
    app = create_app(cfg, fleet, fleet)
    for base in ("http://10.1.2.3:8080", "http://localhost:8080", "http://127.0.0.1", "http://[::1]:8080",
                 "https://fleet.example.com"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/me").status_code == 401, base
    with TestClient(app, base_url="http://testserver") as c:
        assert c.get("/api/me").status_code == 400


def test_allowed_hosts_patterns(fleet: FakeFleet) -> None:
    app = create_app(web_config(allowed_hosts=["*.example.com"]), fleet, fleet)
    with TestClient(app, base_url="http://fleet.example.com") as c:
        assert c.get("/api/me").status_code == 401
    with TestClient(app, base_url="http://example.com.evil") as c:
        assert c.get("/api/me").status_code == 400


# ---- logout, docs ----------------------------------------------------------------------------------------------
def test_logout_needs_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, OPERATOR)
    r = client.post("/logout", follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert client.get("/api/me").status_code == 200
    r = client.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401


def test_logout_takes_the_token_as_a_header_too(client: TestClient) -> None:
    csrf = login(client, VIEWER)
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/api/me").status_code == 401


def test_openapi_schema_and_docs_need_sign_in(client: TestClient) -> None:
    r = client.get("/api/openapi.json")
    assert r.status_code == 401 and "sign in" in r.json()["error"]
    r = client.get("/api/docs", follow_redirects=False)
    assert r.status_code in (303, 401)
    assert r.status_code == 401 or r.headers["location"] == "/login"
    login(client, VIEWER)
    assert "/api/devices" in client.get("/api/openapi.json").json()["paths"]
    assert client.get("/api/docs").status_code == 200


# ---- cookies ---------------------------------------------------------------------------------------------------
def _cookie(app_cfg: dict[str, object], fleet: FakeFleet, base: str = "http://testserver",
            headers: dict[str, str] | None = None, peer: str = "10.0.0.5") -> str:
    app = create_app(web_config(**app_cfg), fleet, fleet)
    with TestClient(app, base_url=base, client=(peer, 1234)) as c:
        r = c.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1]}, headers=headers or {},
                   follow_redirects=False)
        assert r.status_code == 303
        return r.headers["set-cookie"].lower()


def test_cookies_are_secure_when_served_over_tls_by_default(fleet: FakeFleet) -> None:
    assert "; secure" in _cookie({}, fleet, base="https://testserver")
    assert "; secure" not in _cookie({}, fleet)


def test_cookies_are_secure_behind_a_trusted_proxy_that_says_https(fleet: FakeFleet) -> None:
    https = {"X-Forwarded-Proto": "https"}
    assert "; secure" in _cookie({"trusted_proxies": ["10.0.0.0/24"]}, fleet, headers=https)
    assert "; secure" not in _cookie({"trusted_proxies": ["10.9.0.0/24"]}, fleet, headers=https)
    assert "; secure" not in _cookie({}, fleet, headers=https)


def test_explicit_secure_cookie_setting_wins(fleet: FakeFleet) -> None:
    assert "; secure" in _cookie({"secure_cookies": True}, fleet)
    assert "; secure" not in _cookie({"secure_cookies": False}, fleet, base="https://testserver")


# ---- query ranges ----------------------------------------------------------------------------------------------
BIG = 9223372036854775807


@pytest.mark.parametrize(
    "path",
    [
        f"/api/devices/cam-0/history?until_ms={BIG}",
        f"/api/devices/cam-0/history?since_ms={BIG}",
        "/api/devices/cam-0/history?until_ms=-1",
        "/api/devices/cam-0/history?since_ms=-5",
        "/api/devices/cam-0/history?since_ms=10&until_ms=5",
        f"/api/devices/cam-0/history?until_ms={10**30}",
        "/api/devices/cam-0/history?until_ms=1e3",
        f"/api/devices?version={BIG * 4}",
        "/api/devices?version=-1",
        "/api/devices/cam-0/events?limit=0",
        f"/api/devices/cam-0/events?limit={BIG}",
        "/api/audit?limit=-3",
        f"/api/live?since_ms={BIG}",
        "/api/live?since_ms=-1",
    ],
)
def test_out_of_range_query_parameters_are_one_clear_400(client: TestClient, path: str) -> None:
    login(client, VIEWER)
    r = client.get(path)
    assert r.status_code == 400, (path, r.status_code, r.text[:200])
    error = r.json()["error"]
    assert error.startswith("bad request: ") and "Traceback" not in error
    assert "\n" not in error
