"""The pages in a real chromium over a fake fleet: live rows, red offline rows, rollout actions, roles, no errors.

The same checks against the real control plane, simulator and agent are in test_browser_fleet.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from dashboards.web.app import create_app
from dashboards.web.server import WebServer
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR, VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
DOCS_SHOT = Path(__file__).resolve().parents[3] / "docs" / "fleet-page.png"


@pytest.fixture
def served(fleet: FakeFleet) -> Iterator[str]:
    server = WebServer(create_app(web_config(), fleet, fleet), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def test_operator_sees_live_fleet_acts_on_rollout_and_no_console_errors(
    chromium: Browser, served: str, fleet: FakeFleet, tmp_path: Path
) -> None:
    console = ConsoleLog()
    page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 900}))
    sign_in(page, served, OPERATOR)
    expect(page.locator("#devices tbody tr")).to_have_count(4)

    fleet.add_device("cam-new", ["lab"])
    fleet.telemetry("cam-new", {"fps": 29.5, "e2e_ms_p95": 7.25, "cpu_pct": 12.0, "temp_c": 51.0})
    row = page.locator('#devices tbody tr[data-id="cam-new"]')
    expect(row).to_be_visible(timeout=2000)
    expect(row.locator('td[data-key="fps"]')).to_have_text("29.5")
    expect(row).not_to_have_class("bad")
    expect(page.locator('#by-status .pill[data-key="online"]')).to_have_text("online: 5")

    fleet.set_status("cam-0", "offline")
    expect(page.locator('#devices tbody tr[data-id="cam-0"]')).to_have_class("bad", timeout=2000)
    expect(page.locator('#by-status .pill[data-key="offline"]')).to_have_class("pill bad")
    page.fill("#filter", "yard")
    expect(page.locator("#devices tbody tr")).to_have_count(1)
    page.fill("#filter", "")
    page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)

    page.goto(f"{served}/rollouts")
    page.fill("#r-model", "digits")
    page.fill("#r-version", "2")
    page.fill("#r-group", "lab")
    page.click("#r-start")
    expect(page.locator("#msg")).to_contain_text("started")
    rid = fleet.rollouts()[0].rollout_id
    expect(page.locator(f'#rollouts tr[data-id="{rid}"] td.state')).to_have_text("running")
    fleet.advance_rollout(rid, canary=6.5, control=6.0)
    expect(page.locator('#gates tr[data-gate="latency"] td.canary')).to_have_text("6.500", timeout=2000)
    expect(page.locator('#d-stages div[data-state="passed"]')).to_have_count(1)
    page.click('#detail button[data-action="pause"]')
    expect(page.locator(f'#rollouts tr[data-id="{rid}"] td.state')).to_have_text("paused", timeout=2000)
    assert fleet.rollout(rid).state == "paused"  # type: ignore[union-attr]
    page.screenshot(path=str(tmp_path / "rollouts.png"), full_page=True)

    page.goto(f"{served}/devices/cam-new")
    for i in range(3):
        fleet.telemetry("cam-new", {"fps": 30.0 + i, "e2e_ms_p95": 7.0, "cpu_pct": 10.0, "rss_mb": 80.0})
    expect(page.locator('#summary .pill[data-key="status"]')).to_have_text("status: online")
    page.click("#ping")
    expect(page.locator("#msg")).to_have_text("ping sent to cam-new")
    page.fill("#deploy-version", "9")
    page.click("#deploy")
    expect(page.locator("#msg")).to_contain_text("no version 9")
    expect(page.locator("#msg")).to_have_class("error")
    expect(page.locator("#chart-latency canvas")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "device.png"), full_page=True)

    page.goto(f"{served}/alerts")
    expect(page.locator('#alerts tr[data-rule="offline"][data-device="cam-0"]')).to_be_visible(timeout=5000)
    expect(page.locator("#audit tbody tr").first).to_contain_text("olga")
    page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)

    page.goto(f"{served}/devices/ghost")
    expect(page.locator("#msg")).to_contain_text("no device 'ghost'")
    # Chromium logs every refused request; the two refusals this test provoked are the only ones allowed.
    provoked = [e for e in console.errors if "Failed to load resource" in e
                and (("/devices/cam-new" in e and "status of 400" in e) or ("/devices/ghost" in e and "404" in e))]
    assert len(provoked) == 2, console.errors
    assert [e for e in console.errors if e not in provoked] == []
    assert [s for s in fleet.sent if s[0] == "deploy"] == []


def test_viewer_sees_everything_and_cannot_act(chromium: Browser, served: str, fleet: FakeFleet) -> None:
    console = ConsoleLog()
    page = console.attach(chromium.new_page())
    sign_in(page, served, VIEWER)
    expect(page.locator("#devices tbody tr")).to_have_count(4)
    page.goto(f"{served}/devices/cam-1")
    expect(page.locator("#ping")).to_be_disabled()
    expect(page.locator(".viewer-note")).to_be_visible()
    status = page.evaluate("""async () => (await fetch('/api/devices/cam-1/ping',
        {method: 'POST', headers: {'X-CSRF-Token': EF.me.csrf}})).status""")
    assert status == 403
    assert fleet.sent == []
    assert [(a.user, a.ok) for a in fleet.audits] == [("victor", False)]
    provoked = [e for e in console.errors if "Failed to load resource" in e and "status of 403" in e]
    assert len(provoked) == 1 and [e for e in console.errors if e not in provoked] == [], console.errors


@pytest.fixture(autouse=True)
def _keep_screenshot(tmp_path: Path) -> Iterator[None]:
    yield
    shot = tmp_path / "fleet.png"
    if shot.exists() and not DOCS_SHOT.exists():
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS_SHOT)


def test_misbehaving_device_is_marked_and_an_operator_removes_it(
    chromium: Browser, served: str, fleet: FakeFleet
) -> None:
    console = ConsoleLog()
    fleet.misbehave("cam-2", refused=12, shed=4)
    page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 900}))
    sign_in(page, served, OPERATOR)
    row = page.locator('#devices tbody tr[data-id="cam-2"]')
    expect(row).to_have_class("warn")
    expect(row.locator("td").last).to_have_text("12 refused, 4 shed")
    expect(page.locator('#devices tbody tr[data-id="cam-1"]')).not_to_have_class("warn")
    page.select_option("#status-filter", "misbehaving")
    expect(page.locator("#devices tbody tr")).to_have_count(1)

    page.goto(f"{served}/devices/cam-2")
    expect(page.locator('#summary .pill[data-key="misbehaving"]')).to_have_text(
        "misbehaving: 12 refused, 4 shed")
    page.once("dialog", lambda d: d.dismiss())
    page.click("#remove")
    assert fleet.device("cam-2") is not None  # cancelled: nothing happened
    page.once("dialog", lambda d: d.accept())
    page.click("#remove")
    expect(page.locator("#msg")).to_have_text("cam-2 removed")
    assert fleet.device("cam-2") is None
    assert [(a.user, a.action, a.target, a.ok) for a in fleet.audits] == [("olga", "device.remove", "cam-2", True)]
    page.goto(served + "/")
    expect(page.locator("#devices tbody tr")).to_have_count(3)
    assert console.errors == []
