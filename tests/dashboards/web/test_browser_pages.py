"""Pages a newcomer opens first, in a real chromium with no network beyond the app: the sign-in form and the API docs.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from dashboards.web.app import create_app
from dashboards.web.server import WebServer
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR, web_config
from tests.dashboards.web.fakes import FakeFleet

__all__ = ["chromium"]
pytestmark = pytest.mark.browser


@pytest.fixture
def served(fleet: FakeFleet) -> Iterator[str]:
    server = WebServer(create_app(web_config(), fleet, fleet), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def offline(page: Page, base: str, refused: list[str]) -> Page:
    """Only the app itself answers: any other host (a CDN) is refused and recorded, as on an air-gapped site."""
    own = urlsplit(base).netloc

    def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == own or url.startswith("data:"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", handle)
    return page


def test_login_error_shows_only_after_a_failed_sign_in(chromium: Browser, served: str) -> None:
    console = ConsoleLog()
    page = console.attach(chromium.new_page())
    page.goto(f"{served}/login")
    expect(page.locator("#username")).to_be_visible()
    expect(page.locator("#failed")).to_be_hidden()
    page.fill("#username", OPERATOR[0])
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    expect(page.locator("#failed")).to_be_visible()
    expect(page.locator("#failed")).to_have_text("Wrong user name or password.")
    assert console.errors == []


def test_api_docs_render_every_operation_offline_after_sign_in(chromium: Browser, served: str) -> None:
    console = ConsoleLog()
    refused: list[str] = []
    page = console.attach(offline(chromium.new_page(), served, refused))
    sign_in(page, served, OPERATOR)
    page.goto(f"{served}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("edgeferry fleet", timeout=15_000)
    expect(page.locator('.opblock-summary-path[data-path="/api/devices"]').first).to_be_visible()
    assert page.locator(".opblock").count() >= 15
    assert refused == []
    assert console.errors == []
