"""Per-stream figures on /metrics: a family per stream figure, a `stream` label per stream, promtool-clean."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.prometheus_exporter import PrometheusExporter
from shared.streams import STREAM_METRICS
from tests.edge.test_prometheus_exporter import LABELS, PROMTOOL, fetch, scrape

FIGURES = {
    "gate": {"processed_fps": 6.0, "frames": 120.0, "e2e_ms_p99": 40.0, "connected": 1.0},
    "yard": {"processed_fps": 2.5, "frames": 30.0, "connected": 0.0},
}


@pytest.fixture
def exporter() -> Iterator[tuple[PrometheusExporter, int]]:
    exp = PrometheusExporter(labels=LABELS)
    exp.set_streams(lambda: FIGURES)
    port = exp.start("127.0.0.1", 0)
    yield exp, port
    exp.stop()


def test_each_stream_is_a_labelled_sample_of_the_stream_families(exporter: tuple[PrometheusExporter, int]) -> None:
    _, port = exporter
    families = scrape(port)
    fps = families["edgeferry_stream_processed_fps"]
    assert fps[0] == "gauge"
    assert sorted((s[1]["stream"], s[2]) for s in fps[1]) == [("gate", 6.0), ("yard", 2.5)]
    assert all(s[1]["device"] == "cam-1" for s in fps[1])
    assert families["edgeferry_stream_frames"][1][0][0] == "edgeferry_stream_frames_total"
    (e2e,) = families["edgeferry_stream_e2e_p99_seconds"][1]
    assert e2e[1]["stream"] == "gate" and e2e[2] == pytest.approx(0.04)
    # The flat, device-wide families are untouched (no stream label).
    assert "stream" not in str(families.get("edgeferry_frames", ("", []))[1])


def test_promtool_accepts_the_stream_families(exporter: tuple[PrometheusExporter, int]) -> None:
    exp, port = exporter
    exp.set_streams(lambda: {"gate": {m.name: 1.0 for m in STREAM_METRICS}})
    lint = subprocess.run([str(Path(PROMTOOL)), "check", "metrics"], input=fetch(port), capture_output=True,
                          text=True, check=False, timeout=60)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
