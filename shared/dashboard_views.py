"""Dashboard views derived from the metric table: Home Assistant MQTT discovery and a Grafana dashboard."""

from __future__ import annotations

from typing import Any

from shared.metrics import METRICS, STAGES, Metric
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, DeviceTopics

HA_PREFIX = "homeassistant"


def ha_discovery(topics: DeviceTopics, agent_version: str, prefix: str = HA_PREFIX) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, retained payload) per metric, so Home Assistant shows each device without YAML."""
    node = f"edgeferry_{topics.fleet}_{topics.device_id}"
    device = {
        "identifiers": [node],
        "name": f"edgeferry {topics.device_id}",
        "manufacturer": "edgeferry",
        "sw_version": agent_version,
        "suggested_area": topics.fleet,
    }
    out = []
    for m in METRICS:
        cfg: dict[str, Any] = {
            "name": m.description.split(",")[0][:60],
            "unique_id": f"{node}_{m.name}",
            "object_id": f"{node}_{m.name}",
            "state_topic": topics.telemetry,
            "value_template": f"{{{{ value_json.{m.name} }}}}",
            "availability_topic": topics.status,
            "payload_available": STATUS_ONLINE,
            "payload_not_available": STATUS_OFFLINE,
            "state_class": "total_increasing" if m.kind == "counter" else "measurement",
            "device": device,
        }
        if m.unit:
            cfg["unit_of_measurement"] = m.unit
        if m.ha_device_class:
            cfg["device_class"] = m.ha_device_class
        out.append((f"{prefix}/sensor/{node}/{m.name}/config", cfg))
    return out


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"expr": e, "legendFormat": legend, "refId": chr(65 + i)} for i, (e, legend) in enumerate(exprs)],
    }


_GRAFANA_UNITS = {"ms": "ms", "%": "percent", "MiB": "mbytes", "°C": "celsius", "s": "s", "frames/s": "fps"}


def _grafana_unit(m: Metric) -> str:
    return _GRAFANA_UNITS.get(m.unit, "short")


def grafana_dashboard() -> dict[str, Any]:
    """A Grafana dashboard over the agent's Prometheus metrics: one panel per stage, one per other metric."""
    by_name = {m.name: m for m in METRICS}
    panels: list[dict[str, Any]] = []
    pid = 1
    for stage in STAGES:
        exprs = [(f'{by_name[f"{stage}_ms_p{p}"].prometheus_name}{{device=~"$device"}}', f"{{{{device}}}} p{p}")
                 for p in (50, 95, 99)]
        panels.append(_panel(pid, f"{stage} latency", exprs, "ms", 12 * (pid % 2 == 0), 8 * ((pid - 1) // 2)))
        pid += 1
    for m in METRICS:
        if "_ms_p" in m.name:
            continue
        expr = m.prometheus_name + '{device=~"$device"}'
        if m.kind == "counter":
            expr = f"rate({expr}[5m])"
        panels.append(_panel(pid, m.description.split(",")[0], [(expr, "{{device}}")], _grafana_unit(m),
                             12 * (pid % 2 == 0), 8 * ((pid - 1) // 2)))
        pid += 1
    return {
        "title": "edgeferry fleet",
        "uid": "edgeferry-fleet",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "device",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(edgeferry_fps, device)",
                    "includeAll": True,
                    "multi": True,
                },
            ]
        },
        "panels": panels,
    }
