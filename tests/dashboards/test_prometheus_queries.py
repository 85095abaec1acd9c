"""Every Grafana panel's PromQL runs on Debian's real Prometheus scraping a live exporter, and returns data.

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

from dashboards.grafana import DEVICE_VAR, panels
from edge.frame_stats import FrameStats
from edge.prometheus_exporter import PrometheusExporter
from edge.system_stats import SystemStats
from shared.metrics import METRICS
from tests.fixtures.ports import free_port, wait_port

PROMETHEUS = Path("/usr/bin/prometheus")


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def agent_exporter() -> Iterator[int]:
    """An exporter fed like the agent feeds it: frames recorded continuously, figures every 100 ms."""
    stats, system = FrameStats(), SystemStats()
    exporter = PrometheusExporter({"fleet": "lab", "device": "cam-1"}, histograms=stats.histograms)
    port = exporter.start("127.0.0.1", 0)
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
                exporter.update({**always, **stats.values(), **system.sample(), "uptime_s": t})

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(timeout=5)
    exporter.stop()


@pytest.fixture
def prometheus(agent_exporter: int, tmp_path: Path) -> Iterator[int]:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run `apt-get install -y prometheus`")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: edgeferry\n    static_configs: [{{targets: ['127.0.0.1:{agent_exporter}']}}]\n"
    )
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


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_prometheus(prometheus: int, tmp_path: Path) -> None:
    deadline = time.monotonic() + 20
    # rate() and histogram_quantile need at least two scrapes inside the window; wait for four.
    while time.monotonic() < deadline:
        try:
            scraped = query(prometheus, "count_over_time(edgeferry_fps[1m])")
        except OSError:
            scraped = []
        if scraped and float(scraped[0]["value"][1]) >= 4:
            break
        time.sleep(0.25)
    else:
        pytest.fail("Prometheus never scraped the exporter 4 times:\n"
                    + (tmp_path / "prometheus.log").read_text()[-2000:])
    empty = []
    for panel in panels():
        for q in panel.queries:
            result = query(prometheus, q.expr.replace(f"${DEVICE_VAR}", ".*"))
            values = [float(r["value"][1]) for r in result]
            if not values or any(math.isnan(v) for v in values):
                empty.append((panel, q.expr, values))
    print("panels without data on this host:", [p.title for p, _, _ in empty])
    unexplained = [(p.title, expr, values) for p, expr, values in empty if not p.absent_when]
    assert unexplained == []
    assert all(p.absent_when and p.absent_when in p.title for p, _, _ in empty)
    e2e_p95 = query(prometheus, next(q.expr for p in panels() for q in p.queries
                                     if "histogram_quantile(0.95" in q.expr and 'stage="e2e"' in q.expr)
                    .replace(f"${DEVICE_VAR}", ".*"))
    assert 0.0025 <= float(e2e_p95[0]["value"][1]) <= 0.005  # e2e was fed between 2.5 and 4.5 ms
