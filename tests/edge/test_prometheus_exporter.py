"""/metrics scraped over loopback HTTP: names, kinds and values come from the shared metric table."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.errors import AgentError
from edge.prometheus_exporter import PrometheusExporter
from shared.metrics import METRICS


@pytest.fixture
def exporter() -> Iterator[tuple[PrometheusExporter, int]]:
    exp = PrometheusExporter(labels={"fleet": "lab", "device_id": "cam-1"})
    port = exp.start("127.0.0.1", 0)
    yield exp, port
    exp.stop()


def scrape(port: int) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    }


def test_scrape_shows_latest_values_with_device_labels(exporter: tuple[PrometheusExporter, int]) -> None:
    exp, port = exporter
    exp.update({"fps": 29.5, "frames": 1200, "infer_ms_p99": 4.25})
    exp.update({"fps": 30.0})
    families = scrape(port)
    labels = {"fleet": "lab", "device_id": "cam-1"}
    assert families["edgeferry_fps"] == ("gauge", [("edgeferry_fps", labels, 30.0)])
    assert families["edgeferry_frames"] == ("counter", [("edgeferry_frames_total", labels, 1200.0)])
    assert families["edgeferry_infer_ms_p99"][1] == [("edgeferry_infer_ms_p99", labels, 4.25)]


def test_every_declared_metric_is_described_and_unreported_ones_have_no_sample(
    exporter: tuple[PrometheusExporter, int],
) -> None:
    _, port = exporter
    families = scrape(port)
    for m in METRICS:
        family = m.prometheus_name.removesuffix("_total")
        assert family in families, m.name
        assert families[family] == (m.kind, [])


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
