"""The web app's MQTT feed and its buffers against hostile devices: bounded, validated like the ingest, collapsed."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.mqtt_feed import MqttFeed
from dashboards.web.ports import EventRow
from dashboards.web.telemetry_report import parse_telemetry
from shared.metrics import BY_NAME
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually

NOW = 1_700_000_000_000
ENV = {"device_id": "cam-1", "boot_id": "b", "seq": 1, "ts": NOW}


def test_figure_buffer_keeps_only_the_metric_tables_figures() -> None:
    figures = FigureBuffer()
    flood = {**ENV, "fps": 12.5, **{f"x{i}": float(i) for i in range(500_000)}}
    figures.add_report("cam-1", parse_telemetry(json.dumps(flood).encode(), "cam-1"))
    assert figures.latest()["cam-1"] == {"fps": 12.5}
    assert set(figures.latest()["cam-1"]) <= set(BY_NAME)


def test_markup_device_ids_create_no_figures_and_are_counted(mosquitto: Broker) -> None:
    events, figures = EventBuffer(), FigureBuffer()
    feed = MqttFeed("lab", mosquitto.host, mosquitto.port, events, figures)
    feed.start()
    probe = MqttProbe(mosquitto)
    try:
        for bad in ("<img src=x>", "a b", "-lead"):
            probe.publish(f"edgeferry/lab/{bad}/telemetry", json.dumps({**ENV, "e2e_ms_p95": 900.0}))
            probe.publish(f"edgeferry/lab/{bad}/events", json.dumps({**ENV, "type": "new", "after": {
                "label": "person", "score": 0.99, "frame": 1, "model_version": 1}}))
        probe.publish("edgeferry/lab/cam-1/telemetry", json.dumps({**ENV, "fps": 3.0}))
        eventually(lambda: figures.latest().get("cam-1"), 10, "honest figures")
        eventually(lambda: feed.bad_topics == 6, 10, "markup topics counted")
        assert list(figures.latest()) == ["cam-1"]
        assert events.events(None, 0, 100) == []
    finally:
        probe.close()
        feed.stop()


def _row(i: int, type_: str, label: str) -> EventRow:
    return EventRow(device_id="cam-1", ts_ms=NOW + i, type=type_, label=label, score=0.6, frame=i, model_version=1)


def test_collapsed_events_keep_new_and_end_and_one_row_per_run_of_updates() -> None:
    buf = EventBuffer()
    buf.add(_row(0, "new", "cat"))
    for i in range(1, 101):
        buf.add(_row(i, "update", "dog" if i % 2 else "cat"))
    buf.add(_row(101, "end", "cat"))
    rows = buf.events("cam-1", 0, 30, collapsed=True)
    assert [(r.type, r.count) for r in rows] == [("end", 1), ("update", 100), ("new", 1)]
    assert rows[1].label == "cat" and rows[1].first_ts_ms == NOW + 1 and rows[1].ts_ms == NOW + 100
    assert len(buf.events("cam-1", 0, 30)) == 30  # the raw rows (alert rules) are all still there


def test_start_returns_once_the_subscriptions_are_live_so_the_first_report_is_not_missed(mosquitto: Broker) -> None:
    events, figures = EventBuffer(), FigureBuffer()
    feed = MqttFeed("lab", mosquitto.host, mosquitto.port, events, figures)
    subscribe = feed.client.subscribe

    def slow_subscribe(*args: Any, **kwargs: Any) -> Any:  # a slow link: SUBSCRIBE reaches the broker 0.5 s late
        threading.Timer(0.5, lambda: subscribe(*args, **kwargs)).start()
        return (mqtt.MQTT_ERR_SUCCESS, None)

    feed.client.subscribe = slow_subscribe  # type: ignore[method-assign]
    feed.start()
    probe = MqttProbe(mosquitto)
    try:
        probe.publish("edgeferry/lab/cam-1/telemetry", json.dumps({**ENV, "fps": 3.0}))  # right after start()
        eventually(lambda: figures.latest().get("cam-1"), 5, "the report published right after start()")
    finally:
        probe.close()
        feed.stop()
