"""Debian's chromium driven by Playwright (never a downloaded browser), with console errors collected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors a user's devtools would show."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        """Record errors of one page."""
        def on_console(m: ConsoleMessage) -> None:
            if m.type == "error":
                self.errors.append(f"console.error on {page.url}: {m.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught on {page.url}: {e}"))
        return page


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless chromium per test module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (make system installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def sign_in(page: Page, base: str, user: tuple[str, str]) -> None:
    """Fill the login form as a person does."""
    page.goto(f"{base}/login")
    page.fill("#username", user[0])
    page.fill("#password", user[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
