"""The device page of a sensor device charts its anomaly score against the threshold it alarms at, with where an
alert started and ended, in chromium over real Mosquitto and `fleet serve` with its web app, fed by a device
publishing the metric table's sensor figures on its own telemetry topic; a camera's page has no such chart."""

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
from tests.dashboards.web.conftest import OPERATOR, web_config
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import fleet_tree

__all__ = ["chromium"]
pytestmark = pytest.mark.browser
FLEET = "it"
SENSOR, CAM = "imu-1", "cam-1"
THRESHOLD = 1.5
# Per report: score p50, p95, p99, alerts fired since boot, alerts open. The alert opens at report 3 and ends at 6.
REPORTS = [(0.3, 0.5, 0.6, 0, 0), (0.3, 0.6, 0.7, 0, 0), (0.4, 2.5, 3.1, 1, 1), (1.9, 3.0, 4.2, 1, 1),
           (0.5, 1.2, 2.0, 1, 1), (0.3, 0.5, 0.6, 1, 0), (0.3, 0.5, 0.7, 1, 0)]


def publish(probe: MqttProbe, device: str, seq: int, topic: str, body: dict[str, Any], retain: bool = False) -> int:
    ts = int(time.time() * 1000)
    env = {"device_id": device, "boot_id": "boot-1", "seq": seq, "ts": ts}
    probe.publish(f"edgeferry/{FLEET}/{device}/{topic}", json.dumps({**env, **body}), retain=retain)
    return ts


def state(probe: MqttProbe, device: str, model: str) -> None:
    probe.publish(f"edgeferry/{FLEET}/{device}/status", "online", retain=True)
    publish(probe, device, 1, "state", {"agent_version": "0.1.0", "model": {"name": model, "version": 1},
                                        "hardware": {}, "config_digest": "d", "telemetry_interval_s": 0.5},
            retain=True)


def test_a_sensor_device_page_charts_its_score_against_the_threshold_with_alert_marks(
    tmp_path: Path, mosquitto: Broker, chromium: Browser
) -> None:
    cfg = FleetConfig.model_validate(fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet=FLEET))
    service = DashboardService(cfg, web_config(port=0))
    service.start()
    probe = MqttProbe(mosquitto)
    console = ConsoleLog()
    try:
        state(probe, SENSOR, "motions-anomaly")
        state(probe, CAM, "tiny")
        sent = []
        for i, (p50, p95, p99, fired, open_) in enumerate(REPORTS):
            sent.append(publish(probe, SENSOR, i + 2, "telemetry", {
                "anomaly_score_p50": p50, "anomaly_score_p95": p95, "anomaly_score_p99": p99,
                "anomaly_threshold": THRESHOLD, "anomaly_windows_over": 3 if p95 > THRESHOLD else 0,
                "anomaly_alerts": fired, "anomaly_alerts_active": open_, "sensor_window_rate": 4.0,
                "uptime_s": 1.0 + i}))
            publish(probe, CAM, i + 2, "telemetry", {"fps": 25.0, "e2e_ms_p95": 3.5, "uptime_s": 1.0 + i})
            time.sleep(0.3)

        page = console.attach(chromium.new_page(viewport={"width": 1400, "height": 1000}))
        sign_in(page, service.server.url, OPERATOR)
        page.goto(f"{service.server.url}/devices/{SENSOR}")
        expect(page.locator("#sensor-chart h3")).to_contain_text("threshold", timeout=15_000)
        page.wait_for_function(f"() => EF.charts && EF.charts['chart-anomaly'] && "
                               f"EF.charts['chart-anomaly'].data[0].length >= {len(REPORTS)}", timeout=20_000)
        chart = page.evaluate("""() => { const u = EF.charts['chart-anomaly'];
            return {labels: u.series.slice(1).map((s) => s.label), data: u.data, marks: EF.sensorChart.marks,
                    threshold: EF.sensorChart.threshold}; }""")
        assert chart["labels"] == ["score p50", "score p95", "score p99", "threshold"]
        assert chart["data"][4] == [THRESHOLD] * len(REPORTS)
        assert chart["data"][2] == [r[1] for r in REPORTS]
        assert chart["threshold"] == THRESHOLD
        assert [(m["kind"], m["ts_ms"]) for m in chart["marks"]] == [("start", sent[2]), ("end", sent[5])]
        page.screenshot(path=str(tmp_path / "sensor.png"), full_page=True)

        # A camera never reported a score: its page has no anomaly chart.
        page.goto(f"{service.server.url}/devices/{CAM}")
        page.wait_for_function("() => EF.charts && EF.charts['chart-fps'] && "
                               "EF.charts['chart-fps'].data[0].length >= 1", timeout=15_000)
        page.wait_for_timeout(1000)
        assert page.locator("#sensor-chart").count() == 0
        assert console.errors == []
    finally:
        probe.close()
        service.stop()
