"""In chromium: the page's Sign out button works now that sign-out needs the CSRF token, and a throttled sign-in
answers with its reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from dashboards.web.app import create_app
from dashboards.web.server import WebServer
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR, web_config
from tests.dashboards.web.fakes import FakeFleet

__all__ = ["chromium"]
pytestmark = pytest.mark.browser


@pytest.fixture
def served(fleet: FakeFleet) -> Iterator[str]:
    server = WebServer(create_app(web_config(login={"max_failures_per_user": 2}), fleet, fleet), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def test_sign_out_button_ends_the_session(chromium: Browser, served: str) -> None:
    console = ConsoleLog()
    page = console.attach(chromium.new_page())
    sign_in(page, served, OPERATOR)
    page.click("header form button")
    page.wait_for_url(f"{served}/login")
    assert page.request.get(f"{served}/api/me").status == 401
    page.goto(f"{served}/")
    page.wait_for_url(f"{served}/login")
    assert console.errors == []
    page.close()


def test_throttled_sign_in_says_why(chromium: Browser, served: str) -> None:
    page = chromium.new_page()
    for _ in range(2):
        page.goto(f"{served}/login")
        page.fill("#username", OPERATOR[0])
        page.fill("#password", "guess")
        page.click("button[type=submit]")
        page.wait_for_url(f"{served}/login?failed=1")
    page.fill("#username", OPERATOR[0])
    page.fill("#password", OPERATOR[1])
    page.click("button[type=submit]")
    expect(page.locator("body")).to_contain_text("too many failed sign-ins for this user; try again in")
    page.close()
