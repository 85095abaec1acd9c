"""The Grafana dashboards follow the metric table: Prometheus names, histograms for fleet quantiles, honest titles."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dashboards.grafana import (
    DASHBOARD_FILE,
    DEVICE_DASHBOARD_FILE,
    dashboards,
    device_dashboard,
    device_panels,
    fleet_panels,
    grafana_dashboard,
    write_dashboards,
)
from fleet.metrics_export import device_name, fleet_name
from shared.metrics import BY_NAME, METRICS, STAGES


def exprs(dash: dict[str, object]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]  # type: ignore[attr-defined,index]


def test_fleet_latency_is_a_histogram_quantile_across_the_scraped_agents_per_stage() -> None:
    assert ('histogram_quantile(0.95, sum by (le) (rate(edgeferry_stage_latency_seconds_bucket'
            '{stage="e2e",fleet=~"$fleet"}[5m])))') in exprs(grafana_dashboard())
    titles = [p.title for p in fleet_panels()]
    for stage_title in ("Capture wait", "Preprocess", "Inference", "Postprocess", "Publish", "End-to-end"):
        assert (f"{stage_title} latency p50/p95/p99 across scraped agents (histogram_quantile over 5m)"
                in titles)
    assert len([t for t in titles if "histogram_quantile" in t]) == len(STAGES)


def test_fleet_dashboard_shows_status_versions_rollouts_and_every_figure_summarised() -> None:
    used = exprs(grafana_dashboard())
    assert 'sum by (status) (edgeferry_fleet_devices{fleet=~"$fleet"})' in used
    assert 'sum by (model, version) (edgeferry_fleet_devices_by_version{fleet=~"$fleet"})' in used
    assert 'edgeferry_rollout_gate_value{fleet=~"$fleet"}' in used
    assert 'edgeferry_rollout_gate_threshold{fleet=~"$fleet"}' in used
    assert 'edgeferry_fleet_device_series_omitted{fleet=~"$fleet"}' in used
    assert 'sum by (fleet) (rate(edgeferry_fleet_frames_total{fleet=~"$fleet"}[5m]))' in used
    assert 'edgeferry_fleet_rss_bytes{fleet=~"$fleet"}' in used
    text = " ".join(used)
    for m in METRICS:
        if "_ms_p" not in m.name or m.name == "e2e_ms_p95":
            assert fleet_name(m) in text, m.name
    rollout = [p for p in fleet_panels() if "Rollout" in p.title]
    assert len(rollout) == 3 and all("no rollout ran" in p.title for p in rollout)


def test_device_dashboard_reads_one_device_and_its_own_histograms() -> None:
    dash = device_dashboard()
    used = exprs(dash)
    match = 'fleet=~"$fleet",device="$device"'
    assert all(match in e for e in used)
    assert f'rate(edgeferry_device_frames_total{{{match}}}[5m])' in used
    assert f'edgeferry_device_rss_bytes{{{match}}}' in used
    assert f"time() - edgeferry_device_last_seen_timestamp_seconds{{{match}}}" in used
    hist = [p for p in device_panels() if "histogram_quantile" in p.title]
    assert len(hist) == len(STAGES) and all("does not scrape this device's own /metrics" in p.title for p in hist)
    text = " ".join(used)
    for m in METRICS:
        if "_ms_p" not in m.name or m.name.endswith("_ms_p95"):
            assert device_name(m) in text, m.name
    device_var = next(v for v in dash["templating"]["list"] if v["name"] == "device")
    assert device_var["query"] == 'label_values(edgeferry_device_online{fleet=~"$fleet"}, device)'
    assert device_var["multi"] is False


def test_counters_are_rates_gauges_are_base_units_and_absent_figures_say_so() -> None:
    every = exprs(grafana_dashboard()) + exprs(device_dashboard())
    assert not [e for e in every if "_ms_" in e or "_mb" in e or "_pct" in e]
    for p in fleet_panels() + device_panels():
        if "_total" in p.queries[0].expr:
            assert "rate(" in p.queries[0].expr and "per second" in p.title, p.title
    gpu = [p for p in fleet_panels() + device_panels() if p.title.startswith("GPU memory")]
    assert len(gpu) == 2 and all(p.absent_when and "no GPU" in p.title for p in gpu)
    assert BY_NAME["gpu_mem_mb"].absent_when


def test_the_json_models_are_grafana_shaped_and_written_atomically(tmp_path: Path) -> None:
    for dash in (grafana_dashboard(), device_dashboard()):
        ids = [p["id"] for p in dash["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])
        assert all(t["refId"] and t["expr"] for p in dash["panels"] for t in p["targets"])
    assert [d.uid for d in dashboards()] == ["edgeferry-fleet", "edgeferry-device"]
    written = write_dashboards(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DASHBOARD_FILE, DEVICE_DASHBOARD_FILE])
    assert json.loads(written[1].read_text()) == device_dashboard()


def test_shipped_dashboards_and_provisioning_match_the_generator() -> None:
    root = Path("deploy/grafana")
    assert json.loads((root / DASHBOARD_FILE).read_text()) == grafana_dashboard()
    assert json.loads((root / DEVICE_DASHBOARD_FILE).read_text()) == device_dashboard(), \
        "run `edgeferry dashboards` after changing shared/metrics.py"
    source = yaml.safe_load((root / "provisioning/datasources/datasource.yaml").read_text())
    assert source["apiVersion"] == 1 and source["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((root / "provisioning/dashboards/dashboards.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
