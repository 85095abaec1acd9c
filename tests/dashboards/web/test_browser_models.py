"""A device serving two models (`edgeferry sim --streams 4 --second-model people` against `fleet serve`, real
Mosquitto, its web app, chromium): the device page lists both models with their versions, backends and streams, and
its stream table shows each stream's model version."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from dashboards.serve import DashboardService
from fleet.config import FleetConfig
from fleet.sim.runner import SimOptions, ThreadedSimulation
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import VIEWER, web_config
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
DEV = "duo-0000"


def test_a_device_serving_two_models_shows_both_with_their_streams(
    tmp_path: Path, mosquitto: Broker, chromium: Browser
) -> None:
    tree = fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet="duo")
    service = DashboardService(FleetConfig.model_validate(tree), web_config(port=0))
    service.start()
    sim = ThreadedSimulation(SimOptions(devices=1, host=mosquitto.host, port=mosquitto.port, fleet="duo",
                                        prefix="duo", rate_hz=2.0, keepalive_s=5, streams=4, version=3,
                                        second_model="people"))
    console = ConsoleLog()
    try:
        sim.start()
        store = service.fleet.store
        assert store is not None
        eventually(lambda: store.device(DEV).models if store.devices.get(DEV) else None, 30,
                   "the device's further models in the registry")
        eventually(lambda: store.streams.get(DEV), 30, "the device's streams in the registry")

        with httpx.Client(base_url=service.server.url) as client:  # the API a script reads
            client.post("/login", data={"username": VIEWER[0], "password": VIEWER[1]})
            state = client.get(f"/api/devices/{DEV}").json()["state"]
            assert [(m["name"], m["version"], m["streams"]) for m in state["models"]] == [
                ("people", 1, ["cam2", "cam3"])]
            assert (state["model"]["precision"], state["model"]["streams"]) == ("fp32", ["cam0", "cam1"])

        page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
        sign_in(page, service.server.url, VIEWER)
        page.goto(f"{service.server.url}/devices/{DEV}")
        page.wait_for_function("() => EF.models && EF.models.shown.length === 2", timeout=15_000)
        main = page.locator('#model-table tr[data-model="digits"]')
        side = page.locator('#model-table tr[data-model="people"]')
        assert main.locator('td[data-col="version"]').inner_text() == "v3"
        assert main.locator('td[data-col="streams"]').inner_text() == "cam0, cam1"
        assert main.locator('td[data-col="precision"]').inner_text() == "fp32"
        assert side.locator('td[data-col="version"]').inner_text() == "v1"
        assert side.locator('td[data-col="backend"]').inner_text() == "onnxruntime (cpu)"
        assert side.locator('td[data-col="streams"]').inner_text() == "cam2, cam3"
        assert page.locator("#models").is_visible()

        page.wait_for_function("() => EF.streams && EF.streams.shown.length === 4", timeout=15_000)
        version = 'td[data-figure="model_version"]'
        assert page.locator(f'#stream-table tr[data-stream="cam0"] {version}').inner_text() == "v3"
        assert page.locator(f'#stream-table tr[data-stream="cam3"] {version}').inner_text() == "v1"
        assert console.errors == []
    finally:
        sim.stop()
        service.stop()
