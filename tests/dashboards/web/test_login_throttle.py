"""Sign-in as a guesser meets it: failures throttled per user and per address (429, Retry-After, audited), a right
password refused until the lockout ends, unknown names cost the same password work, and a crowd of guessers cannot
run more password checks at once than configured while a signed-in operator's requests keep answering."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

import dashboards.web.auth as auth_module
from dashboards.web.app import create_app
from dashboards.web.server import WebServer
from tests.dashboards.web.conftest import OPERATOR, TOKEN, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet


class Clock:
    """Unix ms the app reads; tests move it."""

    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def sign_in(client: TestClient, user: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": user, "password": password}, follow_redirects=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client_factory(fleet: FakeFleet, clock: Clock) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(address: str = "10.0.0.7", **limits: object) -> TestClient:
        cfg = web_config(login={"window_s": 600, **limits})
        c = TestClient(create_app(cfg, fleet, fleet, clock_ms=clock), client=(address, 40000))
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)


def test_failed_sign_ins_lock_the_user_even_for_the_right_password_until_the_window_passes(
    client_factory: Callable[..., TestClient], fleet: FakeFleet, clock: Clock
) -> None:
    client = client_factory(max_failures_per_user=3, max_failures_per_address=100)
    for _ in range(3):
        assert sign_in(client, OPERATOR[0], "guess").headers["location"] == "/login?failed=1"
    r = sign_in(client, OPERATOR[0], OPERATOR[1])
    assert r.status_code == 429
    assert r.json()["error"] == "too many failed sign-ins for this user; try again in 600 s"
    assert r.headers["retry-after"] == "600"
    assert client.get("/api/me").status_code == 401
    throttled = [a for a in fleet.audits if a.action == "login.throttled"]
    assert [(a.user, a.target, a.ok) for a in throttled] == [(OPERATOR[0], "user olga", False)]
    assert "3 failed sign-ins" in throttled[0].detail

    assert sign_in(client, VIEWER[0], VIEWER[1]).headers["location"] == "/"  # another user from the same address

    clock.ms += 400_000
    r = sign_in(client, OPERATOR[0], OPERATOR[1])
    assert r.status_code == 429 and r.headers["retry-after"] == "200"
    clock.ms += 200_000
    assert sign_in(client, OPERATOR[0], OPERATOR[1]).headers["location"] == "/"
    assert client.get("/api/me").json()["name"] == OPERATOR[0]


def test_failed_sign_ins_lock_the_address_for_every_name(
    client_factory: Callable[..., TestClient], fleet: FakeFleet
) -> None:
    guesser = client_factory("10.0.0.66", max_failures_per_user=100, max_failures_per_address=4)
    for i in range(4):
        assert sign_in(guesser, f"user{i}", "guess").status_code == 303
    r = sign_in(guesser, OPERATOR[0], OPERATOR[1])
    assert r.status_code == 429 and "for this address" in r.json()["error"]
    assert int(r.headers["retry-after"]) > 0
    assert [a.target for a in fleet.audits if a.action == "login.throttled"] == ["address 10.0.0.66"]
    operator = client_factory("10.0.0.8", max_failures_per_user=100, max_failures_per_address=4)
    assert sign_in(operator, OPERATOR[0], OPERATOR[1]).headers["location"] == "/"


def test_unknown_user_costs_the_same_password_check_as_a_known_one(
    client_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = auth_module.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    client = client_factory()
    sign_in(client, OPERATOR[0], "wrong")
    known = len(calls)
    sign_in(client, "nobody-here", "wrong")
    assert known == 1 and len(calls) == 2
    assert calls[1].split("$")[:4] == calls[0].split("$")[:4]  # same scrypt cost parameters


def test_a_crowd_of_guessers_is_bounded_and_the_operator_still_answers(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    real = auth_module.verify_password

    def held(password: str, stored: str) -> bool:
        """A password check that lasts until the test releases it, so the crowd overlaps it for certain."""
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            release.wait(60)
            return real(password, stored)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(auth_module, "verify_password", held)
    cfg = web_config(login={"max_concurrent": 2, "max_failures_per_user": 1000, "max_failures_per_address": 1000})
    server = WebServer(create_app(cfg, fleet, fleet), "127.0.0.1", 0)
    server.start()
    statuses: list[int] = []
    turned_away = threading.Semaphore(0)

    def guess(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=90) as c:
            while True:
                status = c.post("/login", data={"username": f"user{i}", "password": "guess"}).status_code
                statuses.append(status)
                if status != 503 or release.is_set():
                    return
                turned_away.release()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(64)]
    operator_answers: list[int] = []
    try:
        for t in threads:
            t.start()
        for _ in range(62):  # every guesser but the two being checked is turned away at once, not queued
            assert turned_away.acquire(timeout=60), "guessers were queued instead of turned away"
        with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as op:
            for _ in range(10):
                operator_answers.append(op.get("/api/devices").status_code)
    finally:
        release.set()
        for t in threads:
            t.join(90)
        server.stop()
    assert operator_answers == [200] * 10
    assert peak == 2, f"{peak} password checks ran at once"
    assert set(statuses) == {303, 503}
