"""Grafana dashboards generated from the metric table: the fleet (control plane) and one device (template variable).

Two Prometheus sources feed them. `fleet serve`'s /metrics (fleet.metrics_export) gives devices by status and
version, rollout stages and gate figures, fleet-wide summaries over every device and per-device copies of the
telemetry (capped; the cap is a panel of its own). Each agent's own /metrics gives its stage-latency histograms,
which stay per device: fleet-wide quantiles are `histogram_quantile` over the summed bucket rates of the agents
Prometheus scrapes. Each panel's title says what its query computes; panels for figures a host may never report,
or a source a deployment may not scrape, say so in their title.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.metrics_export import FLEET_FAMILIES, device_name, fleet_name
from shared.metrics import BY_NAME, METRICS, PERCENTILES, STAGE_LATENCY, STAGE_TITLES, STAGES, Metric

RATE_WINDOW = "5m"
FLEET_VAR = "fleet"
DEVICE_VAR = "device"
FLEET_MATCH = f'{FLEET_VAR}=~"${FLEET_VAR}"'
DEVICE_MATCH = f'{FLEET_MATCH},{DEVICE_VAR}="${DEVICE_VAR}"'
DASHBOARD_FILE = "edgeferry-fleet.json"
DEVICE_DASHBOARD_FILE = "edgeferry-device.json"
NO_ROLLOUT = "no rollout ran in the shown fleets"
NO_AGENT_SCRAPE = "Prometheus does not scrape this device's own /metrics"
# Flat per-stage percentiles are summarised by dedicated panels; the histograms cover the rest.
_STAGE_PERCENTILES = frozenset(f"{s}_ms_p{p}" for s in STAGES for p in PERCENTILES)


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel; `absent_when` is set when a healthy deployment may have no data for it."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    absent_when: str | None = None


@dataclass(frozen=True)
class Dashboard:
    """One generated dashboard: where it is written, its identity, variables and panels."""

    file: str
    uid: str
    title: str
    variables: tuple[dict[str, Any], ...]
    panels: tuple[Panel, ...]


def _titled(title: str, absent_when: str | None) -> str:
    return f"{title} (no data where {absent_when})" if absent_when else title


def _histogram_panel(stage: str, match: str, scope: str, absent_when: str | None) -> Panel:
    bucket = f"{STAGE_LATENCY.prometheus_name}_bucket"
    queries = tuple(
        Query(f'histogram_quantile({p / 100:g}, sum by (le) (rate({bucket}{{stage="{stage}",{match}}}'
              f"[{RATE_WINDOW}])))", f"p{p}")
        for p in PERCENTILES
    )
    title = f"{STAGE_TITLES[stage]} latency p50/p95/p99 {scope} (histogram_quantile over {RATE_WINDOW})"
    return Panel(_titled(title, absent_when),
                 f"{STAGE_LATENCY.description}, from the agents' own /metrics: quantiles of every frame together.",
                 "s", queries, absent_when)


def _fleet_summary_panel(m: Metric) -> Panel:
    name = fleet_name(m)
    if m.kind == "counter":
        title = f"{m.label} per second, whole fleet (rate over {RATE_WINDOW} of the sum over devices)"
        queries: tuple[Query, ...] = (
            Query(f"sum by (fleet) (rate({name}{{{FLEET_MATCH}}}[{RATE_WINDOW}]))", "{{fleet}}"),)
        unit = "cps"
    else:
        title = f"{m.label} across online devices: min, mean, max"
        queries = (Query(f"{name}{{{FLEET_MATCH}}}", "{{fleet}} {{stat}}"),)
        unit = m.unit_info.grafana
    return Panel(_titled(title, m.absent_when), m.description, unit, queries, m.absent_when)


def _anomaly_ratio_panel() -> Panel:
    """Sensor devices nearest to alarming: each one's score p99 in units of its own threshold (1 = at the line)."""
    score, threshold = BY_NAME["anomaly_score_p99"], BY_NAME["anomaly_threshold"]
    expr = (f"topk(10, {device_name(score)}{{{FLEET_MATCH}}} / on (fleet, device) "
            f"{device_name(threshold)}{{{FLEET_MATCH}}})")
    return Panel(_titled("Worst 10 sensor devices by anomaly score p99 over its threshold (1 = at the line)",
                         score.absent_when),
                 f"{score.description}, divided by the device's {threshold.description.lower()}", "short",
                 (Query(expr, "{{device}}"),), score.absent_when)


def fleet_panels() -> list[Panel]:
    """The fleet dashboard: devices, versions, rollouts, fleet-wide latency, then every figure summarised."""
    e2e_p95 = BY_NAME["e2e_ms_p95"]
    out = [
        Panel("Devices by status (control plane registry)", FLEET_FAMILIES["edgeferry_fleet_devices"].help, "short",
              (Query(f"sum by (status) (edgeferry_fleet_devices{{{FLEET_MATCH}}})", "{{status}}"),)),
        Panel("Devices by served model version", FLEET_FAMILIES["edgeferry_fleet_devices_by_version"].help, "short",
              (Query(f"sum by (model, version) (edgeferry_fleet_devices_by_version{{{FLEET_MATCH}}})",
                     "{{model}} v{{version}}"),)),
        Panel("Devices left out of per-device series (label cardinality cap)",
              FLEET_FAMILIES["edgeferry_fleet_device_series_omitted"].help, "short",
              (Query(f"edgeferry_fleet_device_series_omitted{{{FLEET_MATCH}}}", "{{fleet}}"),)),
        Panel(_titled("Rollout stage reached, of the plan's stages", NO_ROLLOUT),
              FLEET_FAMILIES["edgeferry_rollout_stage"].help, "short",
              (Query(f"edgeferry_rollout_stage{{{FLEET_MATCH}}}", "{{rollout}} stage"),
               Query(f"edgeferry_rollout_stages{{{FLEET_MATCH}}}", "{{rollout}} stages")), NO_ROLLOUT),
        Panel(_titled("Rollout devices by state", NO_ROLLOUT), FLEET_FAMILIES["edgeferry_rollout_devices"].help,
              "short", (Query(f"edgeferry_rollout_devices{{{FLEET_MATCH}}}", "{{rollout}} {{state}}"),), NO_ROLLOUT),
        Panel(_titled("Rollout gate figures, canary and control, against thresholds (each gate's own terms)",
                      NO_ROLLOUT),
              FLEET_FAMILIES["edgeferry_rollout_gate_value"].help, "short",
              (Query(f"edgeferry_rollout_gate_value{{{FLEET_MATCH}}}", "{{rollout}} {{gate}} {{cohort}}"),
               Query(f"edgeferry_rollout_gate_threshold{{{FLEET_MATCH}}}", "{{rollout}} {{gate}} threshold")),
              NO_ROLLOUT),
        Panel("Worst 10 devices by end-to-end p95 (each agent's window, as last reported)", e2e_p95.description,
              "s", (Query(f"topk(10, {device_name(e2e_p95)}{{{FLEET_MATCH}}})", "{{device}}"),)),
        _anomaly_ratio_panel(),
    ]
    out += [_histogram_panel(stage, FLEET_MATCH, "across scraped agents", None) for stage in STAGES]
    out.append(_fleet_summary_panel(e2e_p95))
    out += [_fleet_summary_panel(m) for m in METRICS if m.name not in _STAGE_PERCENTILES]
    return out


def _anomaly_panel(match: str) -> Panel:
    """A sensor model's score quantiles and the threshold it alarms at, in one panel: is it near the line."""
    absent = BY_NAME["anomaly_score_p50"].absent_when
    queries = tuple(Query(f"{device_name(BY_NAME[f'anomaly_score_p{p}'])}{{{match}}}", f"score p{p}")
                    for p in PERCENTILES)
    return Panel(_titled("Anomaly score p50/p95/p99 per report against the threshold it alarms at", absent),
                 f"{BY_NAME['anomaly_score_p95'].description}; {BY_NAME['anomaly_threshold'].description}", "short",
                 (*queries, Query(f"{device_name(BY_NAME['anomaly_threshold'])}{{{match}}}", "threshold")), absent)


def _device_metric_panel(m: Metric) -> Panel:
    selector = f"{device_name(m)}{{{DEVICE_MATCH}}}"
    if m.kind == "counter":
        title = f"{m.label} per second (rate over {RATE_WINDOW})"
        expr, unit = f"rate({selector}[{RATE_WINDOW}])", "cps"
    else:
        title, expr, unit = m.label, selector, m.unit_info.grafana
    return Panel(_titled(title, m.absent_when), m.description, unit, (Query(expr, "{{device}}"),), m.absent_when)


def device_panels() -> list[Panel]:
    """The per-device dashboard: presence, the agent's histograms, per-stage p95 as reported, every figure."""
    out = [
        Panel("Online (1) or not (0)", FLEET_FAMILIES["edgeferry_device_online"].help, "short",
              (Query(f"edgeferry_device_online{{{DEVICE_MATCH}}}", "{{device}}"),)),
        Panel("Seconds since the control plane last heard from the device",
              FLEET_FAMILIES["edgeferry_device_last_seen_timestamp_seconds"].help, "s",
              (Query(f"time() - edgeferry_device_last_seen_timestamp_seconds{{{DEVICE_MATCH}}}", "{{device}}"),)),
        Panel("Per-stage p95 (the agent's window of recent frames, as reported over MQTT)",
              "95th percentile of each stage over the agent's last frames", "s",
              tuple(Query(f"{device_name(BY_NAME[f'{s}_ms_p95'])}{{{DEVICE_MATCH}}}", STAGE_TITLES[s])
                    for s in STAGES)),
        _anomaly_panel(DEVICE_MATCH),
    ]
    out += [_histogram_panel(stage, DEVICE_MATCH, "of this device", NO_AGENT_SCRAPE) for stage in STAGES]
    out += [_device_metric_panel(m) for m in METRICS if m.name not in _STAGE_PERCENTILES]
    return out


def _datasource_var() -> dict[str, Any]:
    return {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}


def _query_var(name: str, query: str, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
    }


def dashboards() -> tuple[Dashboard, Dashboard]:
    """The fleet dashboard and the per-device dashboard."""
    fleet_var = "label_values(edgeferry_fleet_devices, fleet)"
    return (
        Dashboard(DASHBOARD_FILE, "edgeferry-fleet", "edgeferry fleet",
                  (_datasource_var(), _query_var(FLEET_VAR, fleet_var, True)), tuple(fleet_panels())),
        Dashboard(DEVICE_DASHBOARD_FILE, "edgeferry-device", "edgeferry device",
                  (_datasource_var(), _query_var(FLEET_VAR, fleet_var, False),
                   _query_var(DEVICE_VAR, f"label_values(edgeferry_device_online{{{FLEET_MATCH}}}, device)", False)),
                  tuple(device_panels())),
    )


def _panel_json(pid: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"expr": q.expr, "legendFormat": q.legend, "refId": chr(65 + i)} for i, q in enumerate(panel.queries)
        ],
    }


def dashboard_json(dash: Dashboard) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model (schemaVersion 39, Prometheus queries)."""
    return {
        "title": dash.title,
        "uid": dash.uid,
        "tags": ["edgeferry"],
        "editable": False,
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {"list": [dict(v) for v in dash.variables]},
        "panels": [_panel_json(i, p) for i, p in enumerate(dash.panels, start=1)],
    }


def grafana_dashboard() -> dict[str, Any]:
    """The fleet dashboard's JSON model (deploy/grafana/edgeferry-fleet.json)."""
    return dashboard_json(dashboards()[0])


def device_dashboard() -> dict[str, Any]:
    """The per-device dashboard's JSON model (deploy/grafana/edgeferry-device.json)."""
    return dashboard_json(dashboards()[1])


def panels() -> list[Panel]:
    """Every panel of both dashboards (the fleet's first)."""
    return [p for d in dashboards() for p in d.panels]


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_dashboards(out_dir: Path) -> list[Path]:
    """Write both dashboards under out_dir, each atomically (a crash leaves the old file, never half of one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_write(out_dir / d.file, json.dumps(dashboard_json(d), indent=2, ensure_ascii=False) + "\n")
            for d in dashboards()]


def write_dashboard(out_dir: Path) -> Path:
    """Write both dashboards; returns the fleet dashboard's path (kept for callers of the single-file API)."""
    return write_dashboards(out_dir)[0]
