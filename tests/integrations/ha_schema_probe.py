"""Run by Home Assistant's own Python (not by pytest): checks discovery configs the way HA's MQTT discovery does.

Input (argv[1], JSON): {"prefix": "homeassistant", "configs": [[topic, payload], ...], "reports": {"telemetry":
[payload dict, ...], "state": [...]}, "expect": {config topic: [rendered value per report of its state topic (update
entities: the parsed JSON)]},
"statuses": {"online": true, "stopped": false, ...}}. Prints one JSON object: {"problems": [...], "checked": n}.
Each config is matched against HA's discovery topic pattern, expanded from abbreviations, validated with the
platform's DISCOVERY_SCHEMA and the strict PLATFORM_SCHEMA_MODERN, and its templates rendered by HA's template
engine against every report of the topic it reads (the last level of its state_topic); a log record at WARNING or
above, or a state HA would reject (non-numeric sensor, update JSON outside MQTT_JSON_UPDATE_SCHEMA, binary sensor
neither payload_on nor payload_off, event JSON without one of its event_types), or a rendered value other than the
expected one, is a problem. Device triggers (device_automation) are validated with the trigger discovery schema and
their value_template rendered against the reports of their `topic`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import tempfile
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.const import CONF_OBJECT_ID
from homeassistant.components.mqtt.models import MqttValueTemplate, PayloadSentinel
from homeassistant.components.mqtt.update import MQTT_JSON_UPDATE_SCHEMA
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers import template as ha_template


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def _numeric(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("unit_of_measurement") or cfg.get("state_class"))


def _parsed(rendered: Any) -> Any:
    try:
        return json.loads(rendered)
    except (TypeError, ValueError):
        return rendered


def _state_problem(component: str, cfg: dict[str, Any], rendered: Any) -> str | None:
    """Why HA would refuse a rendered state of this platform, or None."""
    if component == "sensor" and _numeric(cfg) and rendered not in ("", "None"):
        try:
            float(rendered)
        except (TypeError, ValueError):
            return f"state {rendered!r} is not numeric"
    if component == "update":
        try:
            MQTT_JSON_UPDATE_SCHEMA(json.loads(rendered))
        except (TypeError, ValueError, vol.Invalid) as exc:
            return f"update payload {rendered!r} is not what HA's update entity accepts: {exc}"
    if component == "event":
        event = _parsed(rendered)
        if not isinstance(event, dict) or event.get("event_type") not in cfg["event_types"]:
            return f"event payload {rendered!r} has no event_type among {cfg['event_types']}"
    if component == "binary_sensor" and rendered not in (cfg["payload_on"], cfg["payload_off"]):
        return f"binary sensor state {rendered!r} is neither {cfg['payload_on']!r} nor {cfg['payload_off']!r}"
    return None


def _trigger_problems(topic: str, payload: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """A device trigger as HA's MQTT device_trigger takes it: schema, then its value rendered per report."""
    from homeassistant.components.mqtt.device_trigger import TRIGGER_DISCOVERY_SCHEMA

    try:
        cfg = TRIGGER_DISCOVERY_SCHEMA(dict(payload))
    except vol.Invalid as exc:
        return [f"{topic}: rejected by Home Assistant's device trigger schema: {exc}"]
    # The trigger's own schema keeps value_template a string; mqtt/trigger.py's schema (cv.template) makes it the
    # Template that MqttValueTemplate renders when the trigger attaches.
    from homeassistant.helpers import config_validation as cv

    raw_tpl = cfg.get("value_template")
    tpl = MqttValueTemplate(None if raw_tpl is None else cv.template(raw_tpl), entity=None)
    reports = spec["reports"].get(str(cfg["topic"]).rsplit("/", 1)[-1], [])
    rendered = [tpl.async_render_with_possible_json_value(json.dumps(r), PayloadSentinel.DEFAULT) for r in reports]
    expected = spec.get("expect", {}).get(topic)
    if not reports:
        return [f"{topic}: no reports of its topic given to render its template against"]
    if expected is not None and rendered != expected:
        return [f"{topic}: rendered {rendered}, want {expected}"]
    return []


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    logs = _Collect()
    logging.getLogger().addHandler(logs)
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        # Templates need the hass the MQTT integration would give them.
        ha_template.async_setup(hass) if hasattr(ha_template, "async_setup") else None
        for topic, raw in spec["configs"]:
            # Trimmed and matched as discovery.async_start does.
            match = discovery.TOPIC_MATCHER.match(topic.replace(f"{spec['prefix']}/", "", 1))
            if match is None:
                problems.append(f"{topic}: not a discovery topic Home Assistant listens to")
                continue
            component = match.group("component")
            payload = dict(raw)
            discovery._replace_all_abbreviations(payload)
            if component == "device_automation":
                problems.extend(_trigger_problems(topic, payload, spec))
                continue
            platform = importlib.import_module(f"homeassistant.components.mqtt.{component}")
            if CONF_OBJECT_ID in payload:
                problems.append(f"{topic}: uses the deprecated object_id")
            try:
                strict = platform.PLATFORM_SCHEMA_MODERN(dict(payload))
                cfg = platform.DISCOVERY_SCHEMA(dict(payload))
            except vol.Invalid as exc:
                problems.append(f"{topic}: rejected by Home Assistant's {component} schema: {exc}")
                continue
            ignored = sorted(set(payload) - set(strict))
            if ignored:
                problems.append(f"{topic}: keys Home Assistant ignores: {ignored}")
            before = len(logs.records)
            value_tpl = MqttValueTemplate(cfg.get("value_template"), entity=None)
            leaf = str(cfg.get("state_topic", "")).rsplit("/", 1)[-1]
            reports = spec["reports"].get(leaf, [])
            if not reports:
                problems.append(f"{topic}: no {leaf!r} reports given to render its template against")
            rendered_all = []
            for report in reports:
                rendered = value_tpl.async_render_with_possible_json_value(json.dumps(report), PayloadSentinel.DEFAULT)
                rendered_all.append(_parsed(rendered) if component in ("update", "event") else rendered)
                why = _state_problem(component, cfg, rendered)
                if why:
                    problems.append(f"{topic}: {why} for report keys {sorted(report)}")
            expected = spec.get("expect", {}).get(topic)
            if expected is not None and rendered_all != expected:
                problems.append(f"{topic}: rendered {rendered_all}, want {expected}")
            avail_tpl = MqttValueTemplate(cfg.get("availability_template"), entity=None)
            for status, available in spec["statuses"].items():
                value = avail_tpl.async_render_with_possible_json_value(status, PayloadSentinel.DEFAULT)
                if value == cfg["payload_available"]:
                    got: bool | None = True
                elif value == cfg["payload_not_available"]:
                    got = False
                else:
                    got = None  # HA ignores the message: availability keeps its previous value
                if got is not available:
                    problems.append(f"{topic}: status {status!r} makes the device available={got}, want {available}")
            problems.extend(f"{topic}: Home Assistant logged: {r}" for r in logs.records[before:])
        await hass.async_stop(force=True)
    return {"problems": problems, "checked": len(spec["configs"]), "home_assistant": HA_VERSION}


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(json.dumps(asyncio.run(main(json.load(fh)))))
