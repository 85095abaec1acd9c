"""A real detection agent, real Mosquitto, `fleet serve` with its web app and chromium: the agent's own snapshot is
drawn with its box on the device page, its zone counts are charted and its object events listed, with no refusals
and no console errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from dashboards.serve import DashboardService
from fleet.config import FleetConfig
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_tree
from tests.integration.agent_harness import running_agent, topics_of
from tests.integration.test_agent_detection import _config

__all__ = ["chromium"]
pytestmark = pytest.mark.browser


def test_a_real_detectors_snapshot_zones_and_object_events_reach_the_device_page(
    tmp_path: Path, mosquitto: Broker, chromium: Browser
) -> None:
    tree, _ = _config(tmp_path, mosquitto)
    topics = topics_of(tree)
    dev = topics.device_id
    cfg = FleetConfig.model_validate(fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet=topics.fleet))
    service = DashboardService(cfg, web_config(port=0))
    service.start()
    probe = MqttProbe(mosquitto)
    console = ConsoleLog()
    try:
        # The web app keeps objects only of devices in the registry: the device says hello before its scene plays.
        hello: dict[str, Any] = {"device_id": dev, "boot_id": "hello", "seq": 1, "ts": int(time.time() * 1000),
                                 "agent_version": "0.1.0", "model": {}, "hardware": {}, "config_digest": "d"}
        probe.publish(f"{topics.base}/state", json.dumps(hello), retain=True)
        eventually(lambda: service.objects.knows(dev), 20, "device in the registry")
        with running_agent(tree):
            objects = service.objects
            eventually(lambda: objects.snapshot(dev), 30, "a snapshot in the web app")
            eventually(lambda: (objects.zones(dev).series.get("bottom") or [0])[-1] == 1, 30, "C counted in bottom")
            eventually(lambda: any(e.type == "end" for e in objects.events(dev, 100)), 30, "an object's end")
            assert service.feed.refused.get(dev, 0) == 0

            page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
            sign_in(page, service.server.url, VIEWER)
            page.goto(f"{service.server.url}/devices/{dev}")
            page.wait_for_function("() => EF.detections && EF.detections.drawn", timeout=15_000)
            drawn = page.evaluate("() => EF.detections.drawn")
            assert drawn["label"].startswith("person ")
            x1, y1, x2, y2 = drawn["box"]
            assert 0 <= x1 < x2 <= drawn["width"] and 0 <= y1 < y2 <= drawn["height"]  # the box lies in the crop
            page.wait_for_function("() => EF.charts && EF.charts['chart-zones']")
            labels = page.evaluate("() => EF.charts['chart-zones'].series.slice(1).map((s) => s.label)")
            assert {"bottom (all)", "left (all)", "bottom: person"} <= set(labels)
            expect(page.locator("#object-events tbody tr").first).to_be_visible()
            assert page.locator('#object-events tbody tr[data-type="new"]').count() >= 1
        assert console.errors == []
    finally:
        probe.close()
        service.stop()
