"""The Grafana dashboard follows the metric table: Prometheus names, histograms for fleet quantiles, honest titles."""

from __future__ import annotations

import json

from dashboards.grafana import grafana_dashboard, panels
from shared.metrics import METRICS, STAGES


def exprs() -> list[str]:
    return [t["expr"] for p in grafana_dashboard()["panels"] for t in p["targets"]]


def test_fleet_latency_is_a_histogram_quantile_across_devices_per_stage() -> None:
    assert ('histogram_quantile(0.95, sum by (le) (rate(edgeferry_stage_latency_seconds_bucket'
            '{stage="e2e",device=~"$device"}[5m])))') in exprs()
    titles = [p.title for p in panels()]
    for stage_title in ("Capture wait", "Preprocess", "Inference", "Postprocess", "Publish", "End-to-end"):
        assert f"{stage_title} latency p50/p95/p99 across devices (histogram_quantile over 5m)" in titles
    assert len([t for t in titles if "histogram_quantile" in t]) == len(STAGES)


def test_counters_are_rates_and_gauges_are_read_per_device_under_prometheus_names() -> None:
    assert 'rate(edgeferry_frames_total{device=~"$device"}[5m])' in exprs()
    assert 'edgeferry_rss_bytes{device=~"$device"}' in exprs()
    assert not [e for e in exprs() if "_ms_" in e or "_mb" in e or "_pct" in e]
    counter_titles = [p.title for p in panels() if p.queries[0].expr.startswith("rate(")]
    assert counter_titles and all("per second per device (rate over 5m)" in t for t in counter_titles)


def test_every_metric_has_a_panel_and_figures_a_host_may_lack_say_so() -> None:
    used = " ".join(exprs())
    for m in METRICS:
        if "_ms_p" not in m.name or m.name == "e2e_ms_p95":
            assert m.prometheus_name in used, m.name
    gpu = next(p for p in panels() if p.title.startswith("GPU memory"))
    assert gpu.absent_when and "no GPU" in gpu.title


def test_the_json_model_is_grafana_shaped() -> None:
    dash = grafana_dashboard()
    json.dumps(dash)
    ids = [p["id"] for p in dash["panels"]]
    assert ids == list(range(1, len(ids) + 1))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])
    assert all(t["refId"] and t["expr"] for p in dash["panels"] for t in p["targets"])
    device = next(v for v in dash["templating"]["list"] if v["name"] == "device")
    assert device["query"] == "label_values(edgeferry_fps, device)"
