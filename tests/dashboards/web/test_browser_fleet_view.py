"""The operator's view of a large fleet in a real chromium over a fake fleet: one page of devices worst first with
desired vs installed and canary/control columns, offline rows greyed with their figures marked stale, paging, the
summary and its chart; the rollout page's devices per state per stage, gate plots and the last decision's reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboards.web.app import create_app
from dashboards.web.server import WebServer
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR, web_config
from tests.dashboards.web.fakes import FakeFleet

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
FLEET = 250  # more than one page of 100


@pytest.fixture
def big() -> FakeFleet:
    """Four devices in lab and yard and 250 in group cams, with figures, on a clock that stands still (so none turns
    stale while a slow machine runs the test, unless the test says so)."""
    now = int(time.time() * 1000)
    fleet = FakeFleet(clock_ms=lambda: now)
    for i in range(3):
        fleet.add_device(f"cam-{i}", ["lab"])
    fleet.add_device("yard-0", ["yard"])
    for i in range(FLEET):
        fleet.add_device(f"cam-{i:03d}", ["cams"])
        fleet.telemetry(f"cam-{i:03d}", {"fps": 25.0, "e2e_ms_p95": 8.0, "cpu_pct": 20.0, "temp_c": 50.0})
    return fleet


@pytest.fixture
def served(big: FakeFleet) -> Iterator[str]:
    server = WebServer(create_app(web_config(), big, big), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#devices tbody tr", "trs => trs.map(t => t.dataset.id)")


def cell(page: Page, device: str, key: str) -> str:
    return page.locator(f'#devices tbody tr[data-id="{device}"] td[data-key="{key}"]').inner_text()


def test_fleet_page_shows_one_page_worst_first_with_desired_cohort_and_stale_rows(
    chromium: Browser, served: str, big: FakeFleet, tmp_path: Path
) -> None:
    big.desire("cam-010", 2)   # wanted on v2, still serves v1: updating
    big.desire("cam-011", 1)   # wanted on v1 and serves it: converged
    big.cohort("cam-010", "canary", "r9")
    big.cohort("cam-011", "control", "r9")
    big.misbehave("cam-200", refused=5)
    big.set_status("cam-150", "offline")
    console = ConsoleLog()
    page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 900}))
    sign_in(page, served, OPERATOR)
    expect(page.locator("#devices tbody tr")).to_have_count(100)
    expect(page.locator("#shown")).to_have_text(f"1\u2013100 of {FLEET + 4} devices")
    # Worst first: the misbehaving device, then the offline one, then the one still updating, then the healthy.
    assert ids(page)[:3] == ["cam-200", "cam-150", "cam-010"]
    assert cell(page, "cam-010", "model_version") == "digits v1"
    assert cell(page, "cam-010", "desired_version") == "v2 (updating)"
    assert cell(page, "cam-011", "desired_version") == "v1 ✓"
    assert (cell(page, "cam-010", "cohort"), cell(page, "cam-011", "cohort"), cell(page, "cam-012", "cohort")) == (
        "canary", "control", "\u2013")
    # The offline device is greyed, its last figures kept but marked stale; a live one's are not.
    offline = page.locator('#devices tbody tr[data-id="cam-150"]')
    expect(offline).to_have_class("bad")
    assert page.locator('#devices tbody tr[data-id="cam-150"] td[data-key="fps"]').get_attribute("class") == (
        "num stale")
    assert cell(page, "cam-150", "fps") == "25.0" and cell(page, "cam-150", "last_seen_ms").endswith("· stale")
    assert page.locator('#devices tbody tr[data-id="cam-012"] td[data-key="fps"]').get_attribute("class") == "num"
    color = offline.locator("td").nth(2).evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(138, 138, 138)", color  # grey, not the live rows' black
    # The summary counts every device, not only the page's, and the chart is drawn.
    expect(page.locator('#by-status .pill[data-key="online"]')).to_have_text(f"online: {FLEET + 3}")
    expect(page.locator('#by-status .pill[data-key="offline"]')).to_have_text("offline: 1")
    expect(page.locator('#by-convergence .pill[data-key="updating"]')).to_have_text("updating: 1")
    expect(page.locator('#by-cohort .pill[data-key="canary"]')).to_have_text("canary: 1")
    expect(page.locator('#by-group .pill[data-key="cams"]')).to_have_text(f"cams: {FLEET}")
    expect(page.locator("#trend canvas")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "fleet.png"))
    page.wait_for_timeout(2500)  # a few live ticks: the chart keeps one point per 5 s step, the newest following
    stamps = page.evaluate("EF.trend.data[0]")
    assert stamps and len({int(t // 5) for t in stamps}) == len(stamps), stamps
    # Paging: the next pages hold the rest, each device once.
    seen = ids(page)
    page.click("#next")
    expect(page.locator("#shown")).to_have_text(f"101\u2013200 of {FLEET + 4} devices")
    seen += ids(page)
    page.click("#next")
    expect(page.locator("#shown")).to_have_text(f"201\u2013{FLEET + 4} of {FLEET + 4} devices")
    seen += ids(page)
    assert len(seen) == FLEET + 4 and len(set(seen)) == FLEET + 4
    expect(page.locator("#next")).to_be_disabled()
    # A device going offline moves to the top on the next tick; the filter works on the whole fleet.
    page.click("#prev")
    page.click("#prev")
    big.set_status("cam-249", "offline")
    expect(page.locator("#devices tbody tr").nth(1)).to_have_attribute("data-id", "cam-150", timeout=5000)
    expect(page.locator('#devices tbody tr[data-id="cam-249"]')).to_have_class("bad")
    page.fill("#filter", "cam-24")
    expect(page.locator("#devices tbody tr")).to_have_count(10)
    page.fill("#filter", "")
    page.select_option("#status-filter", "offline")
    expect(page.locator("#devices tbody tr")).to_have_count(2)
    assert console.errors == []


def test_rollout_page_shows_devices_per_stage_gate_plots_and_the_reason_wrapped(
    chromium: Browser, served: str, big: FakeFleet, tmp_path: Path
) -> None:
    rid = big.start_rollout("digits", 2, "cams")
    big.advance_rollout(rid, canary=6.5, control=6.0)
    console = ConsoleLog()
    page = console.attach(chromium.new_page(viewport={"width": 900, "height": 900}))
    sign_in(page, served, OPERATOR)
    page.goto(f"{served}/rollouts?id={rid}")
    first = page.locator('#stage-states tbody tr[data-stage="1"]')
    expect(first.locator('td[data-state="converged"]')).to_have_text("25")
    expect(page.locator('#stage-states tbody tr[data-stage="2"] td[data-state="installing"]')).to_have_text("1")
    expect(first.locator("td.stage-state")).to_have_text("passed")
    # Each gate: one dot per device, canary and control apart.
    plot = page.locator('#gate-plots .gate-plot[data-gate="latency"]')
    expect(plot.locator("circle.canary")).to_have_count(3)
    expect(plot.locator("circle.control")).to_have_count(4)
    # The last decision's whole reason is on the page, wrapped within it rather than cut off or scrolled.
    last = page.locator("#last-decision")
    expect(last).to_contain_text("every gate passed: e2e p95 6.5 ms vs control 6.0 ms")
    expect(last).to_contain_text("device cam-11 within the effect size of its control")
    box = last.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 900 and box["height"] > 40
    assert page.locator("#decisions td.reason").first.evaluate("e => getComputedStyle(e).whiteSpace") == "normal"
    assert page.evaluate("document.documentElement.scrollWidth") <= 900  # nothing pushes the page sideways
    page.screenshot(path=str(tmp_path / "rollout.png"), full_page=True)
    assert console.errors == []
