"""A sensor device's score is read against its threshold in Grafana: one panel holds both, per device and fleet-wide."""

from __future__ import annotations

from dashboards.grafana import device_panels, fleet_panels
from fleet.metrics_export import device_name
from shared.metrics import BY_NAME, PERCENTILES


def test_the_device_dashboard_draws_the_score_quantiles_and_the_threshold_in_one_panel() -> None:
    panel = next(p for p in device_panels() if "against the threshold" in p.title)
    exprs = [q.expr for q in panel.queries]
    assert all(any(device_name(BY_NAME[f"anomaly_score_p{p}"]) in e for e in exprs) for p in PERCENTILES)
    assert any(device_name(BY_NAME["anomaly_threshold"]) in e for e in exprs)
    assert [q.legend for q in panel.queries][-1] == "threshold"
    assert all('device="$device"' in e for e in exprs)
    assert panel.absent_when and "not an anomaly model" in panel.title


def test_the_fleet_dashboard_ranks_devices_by_their_score_over_their_threshold() -> None:
    panel = next(p for p in fleet_panels() if "over its threshold" in p.title)
    (query,) = panel.queries
    assert query.expr.startswith("topk(10, ")
    assert (f"{device_name(BY_NAME['anomaly_score_p99'])}" in query.expr
            and f"/ on (fleet, device) {device_name(BY_NAME['anomaly_threshold'])}" in query.expr)
    assert panel.absent_when
