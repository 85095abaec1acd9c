"""`edgeferry sim --streams` against `fleet serve` (real Mosquitto, its web app, chromium): a simulated agent's
per-stream figures reach the registry, the web API, the device page and `fleet devices --output json`, the stalled
camera shown disconnected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser

from dashboards.serve import DashboardService
from fleet.config import FleetConfig
from fleet.db.streams import StreamRepository
from fleet.sim.runner import SimOptions, ThreadedSimulation
from shared.streams import STREAM_BY_NAME
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
DEV = "cams-0000"


def test_simulated_streams_reach_the_registry_the_api_the_device_page_and_the_cli(
    tmp_path: Path, mosquitto: Broker, chromium: Browser
) -> None:
    tree = fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet="multi")
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(tree))
    service = DashboardService(FleetConfig.model_validate(tree), web_config(port=0))
    service.start()
    sim = ThreadedSimulation(SimOptions(devices=2, host=mosquitto.host, port=mosquitto.port, fleet="multi",
                                        prefix="cams", rate_hz=2.0, keepalive_s=5, streams=4, stalled_stream=True))
    console = ConsoleLog()
    try:
        sim.start()
        assert service.fleet.store is not None
        kept = StreamRepository(service.fleet.store.engine, "multi")
        got = eventually(lambda: kept.get(DEV), 30, "the device's streams in the registry")
        assert sorted(got.streams) == ["cam0", "cam1", "cam2", "cam3"]
        for figures in got.streams.values():
            assert set(figures) == set(STREAM_BY_NAME)
        assert got.streams["cam3"]["connected"] == 0.0 and got.streams["cam3"]["processed_fps"] == 0.0
        assert got.streams["cam0"]["connected"] == 1.0 and got.streams["cam0"]["processed_fps"] > 10
        assert service.fleet.store.device(DEV).refused == 0

        with httpx.Client(base_url=service.server.url) as client:  # the running app's API as a script reads it
            client.post("/login", data={"username": VIEWER[0], "password": VIEWER[1]})
            body = client.get(f"/api/devices/{DEV}/streams").json()
            assert [s["name"] for s in body["streams"]] == ["cam0", "cam1", "cam2", "cam3"]
            assert body["streams"][3]["figures"]["source_errors"] >= 1

        page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
        sign_in(page, service.server.url, VIEWER)
        page.goto(f"{service.server.url}/devices/{DEV}")
        page.wait_for_function("() => EF.streams && EF.streams.shown.length === 4", timeout=15_000)
        assert page.locator('#stream-table tr[data-stream="cam3"] td[data-figure="connected"]').inner_text() == "no"
        assert page.locator('#stream-table tr[data-stream="cam0"] td[data-figure="connected"]').inner_text() == "yes"
        assert page.locator('#stream-table tr[data-stream="cam3"]').get_attribute("class") == "bad"
        assert console.errors == []

        out = subprocess.run([EDGEFERRY, "fleet", "devices", "--output", "json", "--config",
                              str(tmp_path / "fleet.yaml")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = {r["device_id"]: r for r in json.loads(out.stdout)}
        assert sorted(rows[DEV]["streams"]["streams"]) == ["cam0", "cam1", "cam2", "cam3"]
    finally:
        sim.stop()
        service.stop()
