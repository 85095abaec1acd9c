"""A detector's telemetry reaches the web app's figures and its zone chart from one parse of the message (the feed
used to validate the same payload twice, once per buffer), and a refused report still changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.mqtt_feed import MqttFeed
from dashboards.web.objects import ObjectBuffer
from shared.payloads import TelemetryPayload
from tests.dashboards.web.object_payloads import NOW, Detector

TOPIC = "edgeferry/lab/det-1/telemetry"


def feed() -> tuple[MqttFeed, FigureBuffer, ObjectBuffer]:
    figures, objects = FigureBuffer(), ObjectBuffer()
    return MqttFeed("lab", "127.0.0.1", 1, EventBuffer(), figures, objects=objects), figures, objects


def test_a_detectors_telemetry_is_parsed_once_for_both_figures_and_zone_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[bytes] = []
    original = TelemetryPayload.model_validate_json

    def counting(data: Any, *args: Any, **kwargs: Any) -> TelemetryPayload:
        parses.append(data)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(TelemetryPayload, "model_validate_json", counting)
    web, figures, objects = feed()
    web.take(TOPIC, Detector("det-1").telemetry(NOW, {"yard": 2, "yard/person": 2}, fps=10.0,
                                                   det_objects_per_frame=2.0))
    assert figures.latest()["det-1"] == {"fps": 10.0, "det_objects_per_frame": 2.0}
    assert objects.zones("det-1").series == {"yard": [2], "yard/person": [2]}
    assert len(parses) == 1


def test_a_report_naming_another_device_is_kept_out_of_the_figures_and_the_zone_chart_and_is_counted() -> None:
    web, figures, objects = feed()
    web.take(TOPIC, Detector("det-2").telemetry(NOW, {"yard": 1}, fps=4.0))
    web.take(TOPIC, Detector("det-2").telemetry(NOW, None, fps=5.0))  # no zone counts: still not det-1's figures
    assert figures.latest() == {} and objects.zones("det-1").ts_ms == []
    assert figures.refused() == {"det-1": 2}


def test_a_malformed_report_changes_nothing_and_is_counted() -> None:
    web, figures, objects = feed()
    body = json.loads(Detector("det-1").telemetry(NOW, {"yard": 1}, fps=10.0))
    web.take(TOPIC, json.dumps({**body, "fps": -5.0}).encode())
    web.take(TOPIC, b"{not json")
    assert figures.latest() == {} and objects.zones("det-1").ts_ms == []
    assert figures.refused() == {"det-1": 2}
