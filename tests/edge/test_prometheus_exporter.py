"""/metrics scraped over loopback HTTP: names, kinds, base units and histograms come from the shared metric table,
and the real `promtool check metrics` accepts a live scrape."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.errors import AgentError
from edge.frame_stats import FrameStats
from edge.prometheus_exporter import PrometheusExporter
from shared.metrics import LATENCY_BUCKETS_S, METRICS, STAGE_LATENCY, STAGES

PROMTOOL = Path("/usr/bin/promtool")
LABELS = {"fleet": "lab", "device": "cam-1"}


@pytest.fixture
def stats() -> FrameStats:
    return FrameStats()


@pytest.fixture
def exporter(stats: FrameStats) -> Iterator[tuple[PrometheusExporter, int]]:
    exp = PrometheusExporter(labels=LABELS, histograms=stats.histograms)
    port = exp.start("127.0.0.1", 0)
    yield exp, port
    exp.stop()


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def scrape(port: int) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {
        f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(fetch(port))
    }


def test_scrape_shows_latest_values_in_base_units_with_device_labels(exporter: tuple[PrometheusExporter, int]) -> None:
    exp, port = exporter
    exp.update({"fps": 29.5, "frames": 1200, "infer_ms_p99": 4.25, "rss_mb": 2.0, "cpu_pct": 150.0})
    exp.update({"fps": 30.0})
    families = scrape(port)
    assert families["edgeferry_fps"] == ("gauge", [("edgeferry_fps", LABELS, 30.0)])
    assert families["edgeferry_frames"] == ("counter", [("edgeferry_frames_total", LABELS, 1200.0)])
    assert families["edgeferry_infer_p99_seconds"][1] == [("edgeferry_infer_p99_seconds", LABELS, 0.00425)]
    assert families["edgeferry_rss_bytes"][1] == [("edgeferry_rss_bytes", LABELS, 2.0 * 1024 * 1024)]
    assert families["edgeferry_cpu_ratio"][1] == [("edgeferry_cpu_ratio", LABELS, 1.5)]


def test_every_declared_metric_is_described_and_unreported_ones_have_no_sample(
    exporter: tuple[PrometheusExporter, int],
) -> None:
    _, port = exporter
    families = scrape(port)
    for m in METRICS:
        family = m.prometheus_name.removesuffix("_total")
        assert family in families, m.name
        assert families[family] == (m.kind, [])
    kind, samples = families[STAGE_LATENCY.prometheus_name]
    assert kind == "histogram" and samples and all(value == 0 for _, _, value in samples)  # zeros before a frame


def test_without_a_histogram_source_the_family_is_described_without_samples() -> None:
    exp = PrometheusExporter(labels=LABELS)
    port = exp.start("127.0.0.1", 0)
    try:
        assert scrape(port)[STAGE_LATENCY.prometheus_name] == ("histogram", [])
    finally:
        exp.stop()


def test_stage_latency_is_a_histogram_of_every_frame_since_boot(
    exporter: tuple[PrometheusExporter, int], stats: FrameStats,
) -> None:
    _, port = exporter
    for infer_s in (0.0002, 0.0007, 0.003, 0.003, 9.0):
        stats.record(0.0, 0.0, infer_s, 0.0, 0.0, infer_s, end=1.0)
    _, samples = scrape(port)[STAGE_LATENCY.prometheus_name]
    infer = {s[1]["le"]: s[2] for s in samples if s[1].get("stage") == "infer" and s[0].endswith("_bucket")}
    assert len(infer) == len(LATENCY_BUCKETS_S) + 1
    assert (infer["0.00025"], infer["0.001"], infer["0.005"], infer["2.5"], infer["+Inf"]) == (1, 2, 4, 4, 5)
    total = {s[0]: s[2] for s in samples if s[1].get("stage") == "infer" and not s[0].endswith("_bucket")}
    assert total[f"{STAGE_LATENCY.prometheus_name}_count"] == 5
    assert total[f"{STAGE_LATENCY.prometheus_name}_sum"] == pytest.approx(9.0069)
    assert {s[1]["stage"] for s in samples} == set(STAGES)
    assert all(s[1]["device"] == "cam-1" for s in samples)


def test_promtool_accepts_a_live_scrape(exporter: tuple[PrometheusExporter, int], stats: FrameStats) -> None:
    exp, port = exporter
    for i in range(50):
        stats.record(0.001, 0.0004, 0.002, 0.0001, 0.0003, 0.004, end=i * 0.02)
    exp.update({**stats.values(now=1.0), **{m.name: 1.0 for m in METRICS if m.name not in stats.values(now=1.0)}})
    text = fetch(port)
    assert "edgeferry_stage_latency_seconds_bucket" in text and "edgeferry_e2e_p95_seconds" in text
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True,
                          check=False, timeout=60)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_promtool_still_catches_what_it_used_to() -> None:
    bad = "# HELP edgeferry_e2e_ms_p95 x\n# TYPE edgeferry_e2e_ms_p95 gauge\nedgeferry_e2e_ms_p95 1\n"
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=bad, capture_output=True, text=True,
                          check=False, timeout=60)
    assert lint.returncode != 0 and "abbreviated units" in lint.stdout + lint.stderr


def test_uses_its_own_registry_not_the_global_one(exporter: tuple[PrometheusExporter, int]) -> None:
    exp, _ = exporter
    exp.update({"fps": 1.0})
    assert b"edgeferry_fps" not in generate_latest(REGISTRY)
    assert b"edgeferry_fps" in generate_latest(exp.registry)


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(AgentError, match="prometheus_port"):
            PrometheusExporter().start("127.0.0.1", s.getsockname()[1])
