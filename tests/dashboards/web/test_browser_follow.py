"""What moves each device, in a real chromium: the fleet page's Follows column and the device page's summary say
whether a device follows its channel's pointer (and which channel) or only the fleet's desired state, and a desired
channel shows where a desired version would."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.dashboards.web.browser import chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR
from tests.dashboards.web.fakes import FakeFleet
from tests.dashboards.web.test_browser_fleet_view import big, cell, served

__all__ = ["big", "chromium", "served"]


def test_fleet_and_device_pages_show_follow_mode_channel_and_a_desired_channel(
        chromium: Browser, served: str, big: FakeFleet) -> None:
    big.follows("cam-000", "latest", "beta")
    big.follows("cam-001", "desired", "canary", desired_channel="canary")
    page = chromium.new_page(viewport={"width": 1600, "height": 900})
    sign_in(page, served, OPERATOR)
    expect(page.locator('#devices tbody tr[data-id="cam-001"]')).to_have_count(1)
    assert cell(page, "cam-000", "follow") == "latest (beta)"
    assert cell(page, "cam-001", "follow") == "desired"
    assert cell(page, "cam-001", "desired_version") == "channel canary"
    assert cell(page, "cam-002", "follow") == "\u2013"  # an agent that does not say

    page.goto(served + "/devices/cam-001")
    expect(page.locator('#summary [data-key="follows"]')).to_have_text("follows: desired")
    expect(page.locator('#summary [data-key="desired"]')).to_have_text("desired: channel canary")
