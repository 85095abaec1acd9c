"""The control plane's /metrics: counts by status and version, rollout gates, summaries over every device, per-device
series capped (and the cap visible), base units from the metric table, and the real promtool accepts a live scrape."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.errors import FleetConfigError
from fleet.metrics_export import DeviceView, FleetMetricsExporter, FleetSnapshot, GateView, RolloutView

PROMTOOL = Path("/usr/bin/promtool")


def device(i: int, status: str = "online", version: int = 3, **figures: float) -> DeviceView:
    return DeviceView(f"cam-{i:03d}", "lab", status, "digits", version, 1_700_000_000_000 + i, False,
                      {"fps": 30.0, "frames": 100.0, "e2e_ms_p95": 4.0, **figures})


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def scrape(snapshot: FleetSnapshot, **caps: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    return samples(FleetMetricsExporter(lambda: snapshot, **caps).render().decode())


def test_devices_are_counted_by_status_with_every_status_present_and_by_version() -> None:
    snap = FleetSnapshot([device(1), device(2, "offline", 2), device(3, "stale"), device(4, "weird")])
    got = scrape(snap)
    by_status = {lab["status"]: v for lab, v in got["edgeferry_fleet_devices"]}
    assert by_status == {"online": 1, "stopped": 0, "offline": 1, "stale": 1, "unknown": 1}
    by_version = {lab["version"]: v for lab, v in got["edgeferry_fleet_devices_by_version"]}
    assert by_version == {"3": 3, "2": 1}


def test_per_device_series_are_capped_rollout_devices_first_and_the_cap_is_exported() -> None:
    devices = [device(i) for i in range(10)]
    devices[7] = DeviceView("cam-007", "lab", "online", "digits", 4, None, True, {"fps": 12.0})
    got = scrape(FleetSnapshot(devices), max_device_series=3)
    shown = sorted(lab["device"] for lab, _ in got["edgeferry_device_fps"])
    assert shown == ["cam-000", "cam-001", "cam-007"]
    assert got["edgeferry_fleet_device_series_omitted"] == [({"fleet": "lab"}, 7.0)]
    # Fleet summaries still cover all ten devices, not only the three with series.
    assert dict((lab["stat"], v) for lab, v in got["edgeferry_fleet_fps"]) == {"min": 12.0, "mean": 28.2, "max": 30.0}
    assert got["edgeferry_fleet_frames_total"] == [({"fleet": "lab"}, 900.0)]


def test_versions_over_the_cap_are_summed_as_other() -> None:
    devices = [device(i, version=1 + i % 5) for i in range(10)] + [device(20, version=1)]
    got = scrape(FleetSnapshot(devices), max_version_series=2)
    by_version = {lab["version"]: v for lab, v in got["edgeferry_fleet_devices_by_version"]}
    assert by_version == {"1": 3, "2": 2, "other": 6}


def test_figures_are_in_base_units_and_summaries_use_only_online_devices() -> None:
    snap = FleetSnapshot([device(1, rss_mb=2.0, cpu_pct=50.0), device(2, "offline", e2e_ms_p95=900.0)])
    got = scrape(snap)
    assert got["edgeferry_device_rss_bytes"] == [({"fleet": "lab", "device": "cam-001"}, 2.0 * 1024 * 1024)]
    assert got["edgeferry_device_cpu_ratio"][0][1] == 0.5
    assert {lab["stat"]: v for lab, v in got["edgeferry_fleet_e2e_p95_seconds"]}["max"] == pytest.approx(0.004)
    reporting = {lab["figure"]: v for lab, v in got["edgeferry_fleet_devices_reporting"]}
    assert reporting["e2e_ms_p95"] == 1 and reporting["gpu_pct"] == 0
    assert "edgeferry_device_gpu_ratio" not in got  # no device reported it: no sample, no zero
    online = {lab["device"]: v for lab, v in got["edgeferry_device_online"]}
    assert online == {"cam-001": 1.0, "cam-002": 0.0}


def test_rollout_stage_devices_and_gates_per_cohort_with_thresholds_in_the_gates_terms() -> None:
    gates = (GateView("e2e_ms_p95", "canary", 40.0, 50.0), GateView("e2e_ms_p95", "control", 20.0, 50.0),
             GateView("psi", "canary", 0.05, 0.2))
    live = RolloutView("r-1", "lab", "cams", "digits", 4, "running", 2, 3, {"updated": 5, "pending": 45}, gates)
    done = [RolloutView(f"old-{i}", "lab", "cams", "digits", 3, "succeeded", 3, 3, updated_ms=i) for i in range(8)]
    got = scrape(FleetSnapshot([device(1)], [live, *done]), max_finished_rollouts=2)
    shown = sorted(lab["rollout"] for lab, _ in got["edgeferry_rollout_info"])
    assert shown == ["old-6", "old-7", "r-1"]
    assert ({"rollout": "r-1", "fleet": "lab"}, 2.0) in got["edgeferry_rollout_stage"]
    values = {(lab["gate"], lab["cohort"]): v for lab, v in got["edgeferry_rollout_gate_value"]}
    assert values == {("e2e_ms_p95", "canary"): 40.0, ("e2e_ms_p95", "control"): 20.0, ("psi", "canary"): 0.05}
    thresholds = {lab["gate"]: v for lab, v in got["edgeferry_rollout_gate_threshold"]}
    assert thresholds == {"e2e_ms_p95": 50.0, "psi": 0.2}  # as the gate compares them, not converted
    devices = {lab["state"]: v for lab, v in got["edgeferry_rollout_devices"] if lab["rollout"] == "r-1"}
    assert devices == {"updated": 5, "pending": 45}


def test_a_live_scrape_over_http_passes_promtool() -> None:
    snap = FleetSnapshot([device(i) for i in range(3)],
                         [RolloutView("r-1", "lab", "cams", "digits", 4, "running", 1, 3, {"updated": 1},
                                      (GateView("conf_mean", "canary", 0.9, 0.8),))])
    exporter = FleetMetricsExporter(lambda: snap)
    port = exporter.start("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read()
    finally:
        exporter.stop()
    assert b"edgeferry_rollout_gate_value" in body
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `apt-get install -y prometheus`")
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


def test_a_busy_port_is_one_clear_error() -> None:
    first = FleetMetricsExporter(lambda: FleetSnapshot([]))
    port = first.start("127.0.0.1", 0)
    try:
        with pytest.raises(FleetConfigError, match=f"cannot serve fleet metrics on 127.0.0.1:{port}"):
            FleetMetricsExporter(lambda: FleetSnapshot([])).start("127.0.0.1", port)
    finally:
        first.stop()


def test_the_store_adapter_exports_what_the_registry_and_telemetry_tables_hold(tmp_path: Path) -> None:
    from dataclasses import replace

    from fleet.db.store import FleetStore
    from fleet.metrics_export import StoreSnapshot
    from fleet.registry import TelemetrySample

    now = [1_700_000_000_000]
    store = FleetStore.open(f"sqlite:///{tmp_path / 'fleet.sqlite'}", "lab", clock=lambda: now[0])
    try:
        for dev, status in (("cam-1", "online"), ("cam-2", "offline")):
            store.devices.update(dev, lambda r, s=status: replace(r, reported_status=s, last_seen_ms=now[0],
                                                                  model_name="digits", model_version=3))
        store.telemetry.add([("cam-1", TelemetrySample(now[0] - 2000, {"fps": 10.0}), now[0] - 2000),
                             ("cam-1", TelemetrySample(now[0] - 1000, {"fps": 25.0, "rss_mb": 1.0}), now[0] - 1000),
                             ("cam-2", TelemetrySample(now[0] - 90_000, {"fps": 99.0}), now[0] - 90_000)])
        got = samples(FleetMetricsExporter(StoreSnapshot(store, recent_s=60)).render().decode())
    finally:
        store.close()
    assert {lab["device"]: v for lab, v in got["edgeferry_device_fps"]} == {"cam-1": 25.0}  # latest; cam-2's is old
    assert {lab["status"]: v for lab, v in got["edgeferry_fleet_devices"]}["offline"] == 1
    assert got["edgeferry_fleet_devices_by_version"] == [({"fleet": "lab", "model": "digits", "version": "3"}, 2.0)]


def test_each_streams_model_version_is_a_plain_gauge_with_a_stream_label_and_passes_promtool() -> None:
    duo = DeviceView("cam-duo", "lab", "online", "digits", 3, 1_700_000_000_000, False, {"fps": 30.0},
                     streams={"cam0": {"model_version": 3.0, "processed_fps": 15.0},
                              "cam2": {"model_version": 4.0, "processed_fps": 14.0}})
    body = FleetMetricsExporter(lambda: FleetSnapshot([duo], [])).render()
    got = samples(body.decode())["edgeferry_device_stream_model_version"]
    assert sorted((labels["stream"], value) for labels, value in got) == [("cam0", 3.0), ("cam2", 4.0)]
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `apt-get install -y prometheus`")
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
