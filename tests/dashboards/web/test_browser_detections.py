"""A detector in chromium: the device page draws the latest snapshot with the object's box and label over the JPEG,
charts objects per zone over time and lists object events; the fleet page shows objects/min per device (and none
for a classifier); a classifier's device page shows no detection section; no console errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from dashboards.web.app import create_app
from dashboards.web.objects import ObjectBuffer
from dashboards.web.server import WebServer
from dashboards.web.telemetry_report import parse_telemetry
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.dashboards.web.fakes import FakeFleet
from tests.dashboards.web.object_payloads import GRAY, Detector

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
# The object's box and the crop around it in frame pixels; the JPEG is the crop at 40 x 40, so the page scales it
# by 6 (its 480 x 320 frame) and the box lands at 48..192 on a 240 x 240 canvas.
BOX = (108.0, 58.0, 132.0, 82.0)
CROP = (100.0, 50.0, 140.0, 90.0)


@pytest.fixture
def served(fleet: FakeFleet) -> Iterator[tuple[str, ObjectBuffer]]:
    objects = ObjectBuffer(known=lambda d: fleet.device(d) is not None)
    server = WebServer(create_app(web_config(), fleet, fleet, objects=objects), "127.0.0.1", 0)
    server.start()
    yield server.url, objects
    server.stop()


def pixel(page: object, x: int, y: int) -> list[int]:
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        f"() => Array.from(document.getElementById('snapshot').getContext('2d').getImageData({x}, {y}, 1, 1).data)")


def test_device_and_fleet_pages_show_what_a_detector_sees(
    chromium: Browser, served: tuple[str, ObjectBuffer], fleet: FakeFleet, tmp_path: Path
) -> None:
    url, objects = served
    fleet.add_device("det-1", ["yard"])
    fleet.telemetry("det-1", {"fps": 10.0, "det_objects_per_frame": 1.5, "e2e_ms_p95": 9.0})
    fleet.telemetry("cam-0", {"fps": 25.0, "e2e_ms_p95": 4.0})
    det = Detector("det-1")
    now = fleet.clock_ms()
    for i, (total, people) in enumerate([(0, 0), (1, 1), (2, 1)]):
        report = det.telemetry(now - 3000 + 1000 * i, {"driveway": total, "driveway/person": people})
        objects.add_report("det-1", parse_telemetry(report, "det-1"))
    objects.add_event("det-1", det.event("new", f"{now}-1", "person", now - 2000, ["driveway"]))
    objects.add_event("det-1", det.event("update", f"{now}-1", "person", now - 1000, ["driveway"],
                                         stationary=True, has_snapshot=True))
    objects.add_event("det-1", det.event("end", f"{now}-2", "car", now, []))
    objects.add_snapshot("det-1", f"{now}-1", det.snapshot(f"{now}-1", "person", BOX, CROP, (40, 40), now))

    console = ConsoleLog()
    page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
    sign_in(page, url, VIEWER)
    row = page.locator('#devices tbody tr[data-id="det-1"]')
    expect(row.locator('td[data-key="objects_per_min"]')).to_have_text("900.0")  # 1.5 objects/frame x 10 fps
    classifier = page.locator('#devices tbody tr[data-id="cam-0"] td[data-key="objects_per_min"]')
    expect(classifier).to_have_text("\u2013")  # EF.fmt's dash: no figure
    # The page rewrites "last seen" every second: sampled every 50 ms, it must always be a time, never another figure.
    seen = page.evaluate("""async () => { const out = [];
        for (let i = 0; i < 50; i++) {
          out.push(document.querySelector('#devices tr[data-id="det-1"] td[data-key="last_seen_ms"]').textContent);
          await new Promise((r) => setTimeout(r, 50)); }
        return out; }""")
    assert all(" ago" in t for t in seen), sorted(set(seen))

    page.goto(f"{url}/devices/det-1")
    expect(page.locator("#detections")).to_be_visible()
    page.wait_for_function("() => EF.detections && EF.detections.drawn")
    drawn = page.evaluate("() => EF.detections.drawn")
    assert drawn["label"] == "person 87%" and (drawn["width"], drawn["height"]) == (240, 240)
    assert [round(v) for v in drawn["box"]] == [48, 48, 192, 192]
    r, g, b, _ = pixel(page, 48, 120)  # on the box's left edge: the box colour
    assert r > 200 and g < 90 and b < 130, (r, g, b)
    centre = pixel(page, 120, 120)  # inside the box: the JPEG's gray, untouched
    assert all(abs(c - GRAY) <= 6 for c in centre[:3]), centre
    r, g, b, _ = pixel(page, 50, 35)  # the label's background above the box
    assert r > 200 and g < 90, (r, g, b)
    expect(page.locator("#snapshot-caption")).to_contain_text(f"person {now}-1")

    page.wait_for_function("() => EF.charts && EF.charts['chart-zones']")
    chart = page.evaluate("""() => { const u = EF.charts['chart-zones'];
        return {labels: u.series.slice(1).map((s) => s.label), data: u.data.slice(1)}; }""")
    assert chart == {"labels": ["driveway (all)", "driveway: person"], "data": [[0, 1, 2], [0, 1, 1]]}

    events = page.locator("#object-events tbody tr")
    expect(events).to_have_count(3)
    expect(events.nth(0)).to_have_attribute("data-type", "end")
    expect(events.nth(1).locator("td").nth(6)).to_have_text("stationary, snapshot")
    expect(events.nth(2).locator("td").nth(5)).to_have_text("driveway")
    page.screenshot(path=str(tmp_path / "detector.png"), full_page=True)

    page.goto(f"{url}/devices/cam-0")  # a classifier: nothing of this
    expect(page.locator("#title")).to_have_text("Device cam-0")
    page.wait_for_timeout(500)
    expect(page.locator("#detections")).to_be_hidden()
    assert console.errors == []
