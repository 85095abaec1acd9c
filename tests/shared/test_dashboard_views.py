"""Dashboard views come from the metric table, so a new metric shows up everywhere at once."""

from __future__ import annotations

import json

from shared.dashboard_views import grafana_dashboard, ha_discovery
from shared.metrics import METRICS
from shared.topics import DeviceTopics


def test_home_assistant_discovery_covers_every_metric() -> None:
    topics = DeviceTopics("lab", "cam-1")
    configs = ha_discovery(topics, "0.1.0")
    assert len(configs) == len(METRICS)
    topic, cfg = next(c for c in configs if c[0].endswith("/e2e_ms_p99/config"))
    assert topic == "homeassistant/sensor/edgeferry_lab_cam-1/e2e_ms_p99/config"
    assert cfg["state_topic"] == "edgeferry/lab/cam-1/telemetry"
    assert cfg["value_template"] == "{{ value_json.e2e_ms_p99 }}"
    assert cfg["unit_of_measurement"] == "ms" and cfg["availability_topic"].endswith("/status")
    frames = dict(configs)["homeassistant/sensor/edgeferry_lab_cam-1/frames/config"]
    assert frames["state_class"] == "total_increasing"


def test_grafana_dashboard_queries_prometheus_names() -> None:
    dash = grafana_dashboard()
    json.dumps(dash)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert 'edgeferry_e2e_ms_p99{device=~"$device"}' in exprs
    assert 'rate(edgeferry_frames_total{device=~"$device"}[5m])' in exprs
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
