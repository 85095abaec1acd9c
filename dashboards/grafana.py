"""The Grafana fleet dashboard, generated from the metric table over the agent's Prometheus names.

Each panel's title says what its query computes. Fleet-wide latency comes from the stage histograms
(`histogram_quantile` over summed bucket rates, so it is a true quantile across devices); per-device figures come
from the flat gauges. Panels for figures a host may never report say so in their title.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.metrics import BY_NAME, METRICS, PERCENTILES, STAGE_LATENCY, STAGE_TITLES, STAGES, Metric

RATE_WINDOW = "5m"
DEVICE_VAR = "device"
DEVICE_MATCH = f'{DEVICE_VAR}=~"${DEVICE_VAR}"'
DASHBOARD_FILE = "edgeferry-fleet.json"
# Flat per-stage percentiles are summarised by one per-device panel; the histograms cover the rest.
_STAGE_PERCENTILES = frozenset(f"{s}_ms_p{p}" for s in STAGES for p in PERCENTILES)


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time-series panel; `absent_when` is set when a healthy host may have no data for it."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    absent_when: str | None = None


def _stage_panel(stage: str) -> Panel:
    bucket = f"{STAGE_LATENCY.prometheus_name}_bucket"
    queries = tuple(
        Query(f'histogram_quantile({p / 100:g}, sum by (le) (rate({bucket}{{stage="{stage}",{DEVICE_MATCH}}}'
              f"[{RATE_WINDOW}])))", f"p{p}")
        for p in PERCENTILES
    )
    return Panel(
        f"{STAGE_TITLES[stage]} latency p50/p95/p99 across devices (histogram_quantile over {RATE_WINDOW})",
        f"{STAGE_LATENCY.description}: quantiles of every selected device's frames together.",
        "s",
        queries,
    )


def _metric_panel(m: Metric) -> Panel:
    selector = f"{m.prometheus_name}{{{DEVICE_MATCH}}}"
    if m.kind == "counter":
        title = f"{m.label} per second per device (rate over {RATE_WINDOW})"
        expr, unit = f"rate({selector}[{RATE_WINDOW}])", "cps"
    else:
        title, expr, unit = f"{m.label} per device", selector, m.unit_info.grafana
    if m.absent_when:
        title += f" (no data where {m.absent_when})"
    return Panel(title, m.description, unit, (Query(expr, "{{device}}"),), m.absent_when)


def panels() -> list[Panel]:
    """Every panel of the fleet dashboard, in order: stage histograms, per-device e2e p95, then each figure."""
    e2e = BY_NAME["e2e_ms_p95"]
    out = [_stage_panel(stage) for stage in STAGES]
    out.append(Panel(
        "End-to-end p95 per device (each agent's own window of recent frames)",
        e2e.description, "s", (Query(f"{e2e.prometheus_name}{{{DEVICE_MATCH}}}", "{{device}}"),),
    ))
    out += [_metric_panel(m) for m in METRICS if m.name not in _STAGE_PERCENTILES]
    return out


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


def grafana_dashboard() -> dict[str, Any]:
    """The fleet dashboard as Grafana's JSON model (deploy/grafana/edgeferry-fleet.json)."""
    return {
        "title": "edgeferry fleet",
        "uid": "edgeferry-fleet",
        "tags": ["edgeferry"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": DEVICE_VAR,
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({BY_NAME['fps'].prometheus_name}, {DEVICE_VAR})",
                    "includeAll": True,
                    "multi": True,
                },
            ]
        },
        "panels": [_panel_json(i, p) for i, p in enumerate(panels(), start=1)],
    }


def write_dashboard(out_dir: Path) -> Path:
    """Write the dashboard JSON under out_dir atomically (a crash leaves the old file, never half of one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DASHBOARD_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(grafana_dashboard(), indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
