"""The device page answers "is this camera healthy and what is it seeing", in chromium over real Mosquitto, `fleet
serve` with its web app, the simulator (a device that answers pings) and a scripted camera publishing on its own
topics: per-frame results collapse, inference is visible apart from capture wait, lines break across a silence and
a restart, and ping shows the device's reply or a clear timeout."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect

from dashboards.serve import DashboardService
from fleet.config import FleetConfig
from fleet.sim.runner import SimOptions
from tests.dashboards.web.browser import ConsoleLog, chromium, sign_in
from tests.dashboards.web.conftest import OPERATOR, web_config
from tests.dashboards.web.test_browser_fleet import simulated
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
FLEET = "it"
CAM = "cam-1"
INTERVAL_S = 0.5


class Camera:
    """A device scripted on its own topics: retained state, telemetry each interval, events."""

    def __init__(self, probe: MqttProbe) -> None:
        self.probe = probe
        self.base = f"edgeferry/{FLEET}/{CAM}"
        self.seq = 0
        self.boot = "boot-1"

    def env(self) -> dict[str, Any]:
        self.seq += 1
        return {"device_id": CAM, "boot_id": self.boot, "seq": self.seq, "ts": int(time.time() * 1000)}

    def state(self) -> None:
        self.probe.publish(f"{self.base}/status", "online", retain=True)
        self.probe.publish(f"{self.base}/state", json.dumps({
            **self.env(), "agent_version": "0.1.0", "model": {"name": "tiny", "version": 1}, "hardware": {},
            "config_digest": "d", "telemetry_interval_s": INTERVAL_S}), retain=True)

    def telemetry(self, uptime_s: float) -> None:
        figures = {"fps": 25.0, "capture_wait_ms_p95": 400.0, "preprocess_ms_p95": 0.4, "infer_ms_p95": 2.5,
                   "postprocess_ms_p95": 0.1, "publish_ms_p95": 0.2, "e2e_ms_p95": 3.5, "cpu_pct": 20.0,
                   "rss_mb": 90.0, "uptime_s": uptime_s}
        self.probe.publish(f"{self.base}/telemetry", json.dumps({**self.env(), **figures}))

    def run(self, uptimes: list[float]) -> None:
        for u in uptimes:
            self.telemetry(u)
            time.sleep(INTERVAL_S)

    def event(self, type_: str, label: str, frame: int) -> None:
        det = {"label": label, "score": 0.75, "frame": frame, "model_version": 1}
        self.probe.publish(f"{self.base}/events", json.dumps({**self.env(), "type": type_, "after": det}))


def test_device_page_shows_health_and_what_the_camera_sees(
    tmp_path: Path, mosquitto: Broker, chromium: Browser
) -> None:
    cmd_pub = tmp_path / "fleet.pub"
    cmd_pub.write_bytes(COMMAND_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "store").mkdir()
    cfg = FleetConfig.model_validate(fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet=FLEET, **{
        "commands.key": str(write_private_key(COMMAND_KEY, tmp_path / "fleet.key")),
        "packages.store.uri": str(tmp_path / "store")}))
    service = DashboardService(cfg, web_config(port=0))
    service.start()
    probe = MqttProbe(mosquitto)
    console = ConsoleLog()
    try:
        with simulated(SimOptions(devices=1, host=mosquitto.host, port=mosquitto.port, fleet=FLEET, groups=["sim"],
                                  rate_hz=1.0, model="tiny", version=1, command_keys=[cmd_pub], keepalive_s=5)):
            cam = Camera(probe)
            cam.state()
            cam.run([1.0, 1.5, 2.0, 2.5])
            time.sleep(6 * INTERVAL_S)  # silent for 6 intervals: the charts must not join across it
            cam.run([5.5, 6.0, 6.5])
            cam.boot = "boot-2"  # a restart without a pause: uptime starts again
            cam.run([0.5, 1.0, 1.5])
            cam.event("new", "cat", 0)
            for i in range(1, 41):  # a noisy classifier: the top-1 label flips every frame
                cam.event("update", "dog" if i % 2 else "cat", i)
            store = service.fleet.store
            assert store is not None
            sim_id = eventually(lambda: next((d.device_id for d in store.list_devices(group="sim")), None), 30,
                                "simulated device registered")
            eventually(lambda: len(service.feed.buffer.events(CAM, 0, 100)) == 41, 20, "events in the web app")

            page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
            sign_in(page, service.server.url, OPERATOR)
            page.goto(f"{service.server.url}/devices/{CAM}")

            # What it sees: one row for the run of 40 updates (the latest), the `new` row kept.
            rows = page.locator("#events tbody tr")
            expect(rows).to_have_count(2, timeout=10_000)
            expect(rows.nth(0).locator("td").nth(1)).to_have_text("update \u00d740")
            expect(rows.nth(0).locator("td").nth(2)).to_have_text("cat")
            expect(rows.nth(1).locator("td").nth(1)).to_have_text("new")

            # Inference has a chart without capture wait, so its scale is the stages' own, not 400 ms.
            page.wait_for_function("() => EF.charts && EF.charts['chart-stages'] && "
                                   "EF.charts['chart-stages'].data[0].length >= 10")
            stages = page.evaluate("""() => { const u = EF.charts['chart-stages'];
                return {labels: u.series.slice(1).map((s) => s.label), max: u.scales.y.max,
                        infer: u.data[2].filter((v) => v !== null)}; }""")
            assert "inference" in stages["labels"] and "capture wait" not in stages["labels"]
            assert set(stages["infer"]) == {2.5} and stages["max"] < 50

            # Health over time: the fps line breaks at the silence and at the restart, nowhere else.
            fps = page.evaluate("() => EF.charts['chart-fps'].data[1]")
            assert len(fps) == 12 and [i for i, v in enumerate(fps) if v is None] == [4, 8], fps
            page.screenshot(path=str(tmp_path / "device.png"), full_page=True)

            # Ping: the scripted camera never answers (a clear timeout); the simulated device replies.
            page.click("#ping")
            expect(page.locator("#ping-reply")).to_contain_text(f"no reply from {CAM} within", timeout=25_000)
            page.goto(f"{service.server.url}/devices/{sim_id}")
            page.click("#ping")
            expect(page.locator("#ping-reply")).to_contain_text(f"{sim_id} replied in", timeout=15_000)

            # Removing the camera forgets it in the registry and clears its retained topics on the broker.
            page.goto(f"{service.server.url}/devices/{CAM}")
            page.once("dialog", lambda d: d.accept())
            page.click("#remove")
            expect(page.locator("#msg")).to_contain_text(f"{CAM} removed: registry, history and retained topics")
            assert store.devices.get(CAM) is None
            late = MqttProbe(mosquitto, f"edgeferry/{FLEET}/{CAM}/#")
            late.publish(f"edgeferry/{FLEET}/{CAM}/probe", "x")
            late.wait_for(lambda m: m.topic.endswith("/probe"), what="own message")
            assert [m.topic for m in late.messages if m.retain] == []
            late.close()
        assert console.errors == []
    finally:
        probe.close()
        service.stop()
