"""Every panel of both Grafana dashboards runs on Debian's real Prometheus scraping a live control-plane exporter
and a live agent exporter (with the scrape jobs of the shipped deploy/grafana/prometheus.yml), and returns data.

A panel may come back empty only when it is for a figure this host cannot report (no GPU, no thermal zone, no
swap yet) and its title says so.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.grafana import DEVICE_VAR, FLEET_VAR, Panel, panels
from edge.frame_stats import FrameStats
from edge.prometheus_exporter import PrometheusExporter
from edge.system_stats import SystemStats
from fleet.metrics_export import DeviceView, FleetMetricsExporter, FleetSnapshot, GateView, RolloutView
from shared.metrics import METRICS
from tests.fixtures.ports import free_port, wait_port

PROMETHEUS = Path("/usr/bin/prometheus")
SCRAPE_CONFIG = Path("deploy/grafana/prometheus.yml")
FLEET, DEVICE = "lab", "cam-1"


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def exporters() -> Iterator[tuple[int, int]]:
    """(control plane port, agent port): the agent's exporter fed like the agent feeds it (frames recorded
    continuously, figures every 100 ms), and the control plane's exporting what it last heard from that agent,
    a second device gone offline and a rollout in its second stage."""
    stats, system = FrameStats(), SystemStats()
    exporter = PrometheusExporter({"fleet": FLEET, "device": DEVICE}, histograms=stats.histograms)
    port = exporter.start("127.0.0.1", 0)
    heard: dict[str, float] = {}

    def snapshot() -> FleetSnapshot:
        gates = (GateView("e2e_ms_p95", "canary", heard.get("e2e_ms_p95", 0.0), 50.0),
                 GateView("e2e_ms_p95", "control", 3.0, 50.0), GateView("psi", "canary", 0.02, 0.2))
        return FleetSnapshot(
            [DeviceView(DEVICE, FLEET, "online", "digits", 3, int(time.time() * 1000), True, dict(heard)),
             DeviceView("cam-2", FLEET, "offline", "digits", 2, int(time.time() * 1000) - 60_000)],
            [RolloutView("r-1", FLEET, "cams", "digits", 3, "running", 2, 3, {"updated": 1, "pending": 1}, gates)],
        )

    fleet = FleetMetricsExporter(snapshot)
    fleet_port = fleet.start("127.0.0.1", 0)
    # Counters and gauges every running agent reports (zero until something happens); the rest come from
    # the frame statistics and this host's own system figures.
    always = {m.name: 0.0 for m in METRICS if m.absent_when is None}
    stop = threading.Event()

    def feed() -> None:
        t = 0.0
        while not stop.wait(0.01):
            t += 0.01
            stats.record(0.0004, 0.0002, 0.0015 + (t % 0.002), 0.0001, 0.0001, 0.0025 + (t % 0.002),
                         end=time.perf_counter())
            if int(t * 100) % 10 == 0:
                figures = {**always, **stats.values(), **system.sample(), "uptime_s": t}
                exporter.update(figures)
                heard.update(figures)  # what the agent's telemetry would carry to the control plane

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield fleet_port, port
    stop.set()
    thread.join(timeout=5)
    exporter.stop()
    fleet.stop()


@pytest.fixture
def prometheus(exporters: tuple[int, int], tmp_path: Path) -> Iterator[int]:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run `apt-get install -y prometheus`")
    port = free_port()
    shipped = yaml.safe_load(SCRAPE_CONFIG.read_text())
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = {job["job_name"]: job for job in shipped["scrape_configs"]}
    assert sorted(jobs) == ["edgeferry-agents", "edgeferry-fleet"]
    for name, target in zip(("edgeferry-fleet", "edgeferry-agents"), exporters, strict=True):
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{target}"]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(shipped))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, timeout=20)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def resolve(expr: str) -> str:
    """The query as Grafana sends it with fleet `lab` and device `cam-1` chosen."""
    return expr.replace(f"${FLEET_VAR}", FLEET).replace(f"${DEVICE_VAR}", DEVICE)


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_prometheus(prometheus: int, tmp_path: Path) -> None:
    deadline = time.monotonic() + 20
    # rate() and histogram_quantile need at least two scrapes inside the window; wait for four of each job.
    while time.monotonic() < deadline:
        try:
            scraped = [query(prometheus, f"count_over_time({name}[1m])")
                       for name in ("edgeferry_fps", "edgeferry_device_fps")]
        except OSError:
            scraped = []
        if scraped and all(r and float(r[0]["value"][1]) >= 4 for r in scraped):
            break
        time.sleep(0.25)
    else:
        pytest.fail("Prometheus never scraped both exporters 4 times:\n"
                    + (tmp_path / "prometheus.log").read_text()[-2000:])
    empty: list[tuple[Panel, str, list[float]]] = []
    for panel in panels():
        for q in panel.queries:
            result = query(prometheus, resolve(q.expr))
            values = [float(r["value"][1]) for r in result]
            if not values or any(math.isnan(v) for v in values):
                empty.append((panel, q.expr, values))
    print("panels without data on this host:", [p.title for p, _, _ in empty])
    unexplained = [(p.title, expr, values) for p, expr, values in empty if not p.absent_when]
    assert unexplained == []
    assert all(p.absent_when and p.absent_when in p.title for p, _, _ in empty)
    for p in panels():
        p95 = p.queries[1].expr if len(p.queries) == 3 else ""
        if "histogram_quantile(0.95" in p95 and 'stage="e2e"' in p95:
            e2e_p95 = query(prometheus, resolve(p.queries[1].expr))
            assert 0.0025 <= float(e2e_p95[0]["value"][1]) <= 0.005, p.title  # e2e was fed at 2.5 to 4.5 ms
    by_status = {r["metric"]["status"]: float(r["value"][1])
                 for r in query(prometheus, resolve(panels()[0].queries[0].expr))}
    assert by_status == {"online": 1, "stopped": 0, "offline": 1, "stale": 0, "unknown": 0}
    gate = query(prometheus, 'edgeferry_rollout_gate_threshold{gate="e2e_ms_p95"}')
    assert float(gate[0]["value"][1]) == 50.0  # in the gate's own terms, as it compares
