"""One device's poisoned figures through the real broker into a running `fleet serve` web app: the live feed keeps
moving for the honest devices, every page and the live channel stay valid JSON, markup ids create nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards.serve import DashboardService
from fleet.config import FleetConfig
from tests.dashboards.web.conftest import TOKEN, web_config
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_tree

FLEET = "it"
HUGE = "9" * 401  # a 401-digit integer: float() of it overflows
MARKUP = "<img src=x onerror=alert(1)>"


def _strict(text: str) -> Any:
    """JSON as a browser's JSON.parse reads it: Infinity and NaN are not JSON."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _env(device: str, seq: int) -> str:
    return f'"device_id":"{device}","boot_id":"b1","seq":{seq},"ts":{int(time.time() * 1000)}'


def _state(device: str) -> str:
    return json.dumps({"device_id": device, "boot_id": "b1", "seq": 0, "ts": int(time.time() * 1000),
                       "agent_version": "0.1.0", "model": {"name": "tiny", "version": 1}, "hardware": {},
                       "config_digest": "d", "telemetry_interval_s": 1.0})


class Api:
    """The web app's JSON API as a script sees it (API token), every answer parsed strictly."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def get(self, path: str) -> Any:
        r = self.client.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        return _strict(r.text)

    def fps(self, device: str) -> float | None:
        rows = {d["device_id"]: d for d in self.get("/api/devices")}
        return rows[device]["fps"] if device in rows else None

    def live(self, query: str, until: Any, timeout_s: float = 15) -> list[Any]:
        """Server-sent events until one satisfies `until` (each parsed strictly)."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        with self.client.stream("GET", "/api/live" + query, timeout=timeout_s) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(_strict(line[len("data: "):]))
                    if until(got[-1]):
                        return got
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"live channel: condition not met in {timeout_s}s; got {got!r}"[:2000])


@pytest.fixture
def served(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[DashboardService, Api]]:
    cfg = FleetConfig.model_validate(fleet_tree(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", fleet=FLEET))
    service = DashboardService(cfg, web_config(port=0))
    service.start()
    api = Api(service.server.url)
    try:
        yield service, api
    finally:
        api.client.close()
        service.stop()


def test_poisoned_figures_break_nothing_and_honest_figures_keep_moving(
    served: tuple[DashboardService, Api], mosquitto: Broker
) -> None:
    service, api = served
    dev = MqttProbe(mosquitto)
    base = f"edgeferry/{FLEET}"
    try:
        for d in ("cam-ok", "cam-bad"):
            dev.publish(f"{base}/{d}/status", "online", retain=True)
            dev.publish(f"{base}/{d}/state", _state(d), retain=True)
        dev.publish(f"{base}/cam-ok/telemetry", "{" + _env("cam-ok", 1) + ',"fps":1.0}')
        eventually(lambda: api.fps("cam-ok") == 1.0, 20, "honest device's first figure")
        eventually(lambda: "cam-bad" in {d["device_id"] for d in api.get("/api/devices")}, 20, "cam-bad listed")

        poisons = [
            ("telemetry", ',"fps":Infinity,"e2e_ms_p95":5.0'),
            ("telemetry", ',"fps":NaN'),
            ("telemetry", ',"e2e_ms_p95":1e400'),
            ("telemetry", f',"fps":{HUGE}'),
            ("telemetry", f',"frames":-{HUGE}'),
            ("events", ',"type":"new","after":{"label":"cat","score":Infinity,"frame":1,"model_version":1}'),
            ("events", ',"type":"new","after":{"label":"cat","score":NaN,"frame":2,"model_version":1}'),
            ("events", f',"type":"new","after":{{"label":"cat","score":0.5,"frame":{HUGE},"model_version":1}}'),
        ]
        for i, (leaf, body) in enumerate(poisons, start=2):
            dev.publish(f"{base}/cam-bad/{leaf}", "{" + _env("cam-bad", i) + body + "}")
        # A device id no registry accepts (markup) must create neither a row nor an alert (rule: e2e_ms_p95 > 50).
        dev.publish(f"{base}/{MARKUP}/telemetry", "{" + _env("x", 1) + ',"e2e_ms_p95":999.0}')
        dev.publish(f"{base}/cam-ok/telemetry", "{" + _env("cam-ok", 2) + ',"fps":2.0}')
        eventually(lambda: api.fps("cam-ok") == 2.0, 20, "honest device's figure after the poisons")

        # The live channel: the snapshot and the next batches parse, and the honest device's change arrives.
        dev.publish(f"{base}/cam-ok/telemetry", "{" + _env("cam-ok", 3) + ',"fps":3.0}')
        api.live("?device=cam-bad&since_ms=0", lambda m: any(
            d["device_id"] == "cam-ok" and d["fps"] == 3.0 for d in m.get("devices", [])))

        for path in ("/api/devices", "/api/counts", "/api/alerts", "/api/rollouts", "/api/devices/cam-bad",
                     "/api/devices/cam-bad/history?since_ms=0", "/api/devices/cam-bad/events",
                     "/api/devices/cam-ok/history?since_ms=0"):
            api.get(path)
        shown = {d["device_id"]: d for d in api.get("/api/devices")}
        assert MARKUP not in shown
        assert shown["cam-bad"]["refused"] >= len(poisons) and shown["cam-ok"]["refused"] == 0  # misbehaving shown
        assert {a["device_id"] for a in api.get("/api/alerts")} <= {"cam-ok", "cam-bad"}
        events = api.get("/api/devices/cam-bad/events")
        assert all(e["score"] is None or 0 <= e["score"] <= 1 for e in events)
        feed = service.feed
        assert feed.client._thread is not None and feed.client._thread.is_alive()
        assert feed.refused.get("cam-bad", 0) == len(poisons)
        assert feed.bad_topics == 1
    finally:
        dev.close()
