"""Alert rules over the metric table: what fires, when it starts and ends, how it reaches MQTT, bad rules."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from dashboards.web.alerts import AlertTracker, alert_topic, evaluate
from dashboards.web.config import ClassRule, MetricRule, OfflineRule, WebConfig
from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.mqtt_feed import MqttFeed
from dashboards.web.ports import DeviceRow, EventRow
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually

NOW = 1_700_000_000_000
OFFLINE = OfflineRule(kind="offline", name="offline", for_s=300)
SLOW = MetricRule(kind="metric", name="slow", metric="e2e_ms_p95", op=">", threshold=50)
REJECTS = MetricRule(kind="metric", name="rejects", metric="package_rejects", op=">", threshold=0)
PERSON = ClassRule(kind="class", name="person", labels=["person"], min_score=0.8, window_s=60)


def row(device: str, status: str = "online", silent_s: float = 0) -> DeviceRow:
    return DeviceRow(device_id=device, fleet="lab", status=status, last_seen_ms=NOW - int(silent_s * 1000))  # type: ignore[arg-type]


def test_offline_fires_only_after_its_time() -> None:
    devices = [row("a", "offline", 299), row("b", "stale", 301), row("c", "online", 9999)]
    fired = evaluate([OFFLINE], devices, {}, [], NOW)
    assert [(a.rule, a.device_id) for a in fired] == [("offline", "b")]
    assert "stale for 301 s" in fired[0].message


def test_metric_rules_read_the_declared_figure() -> None:
    figures = {"a": {"e2e_ms_p95": 51.0, "package_rejects": 0.0}, "b": {"e2e_ms_p95": 50.0, "package_rejects": 2.0}}
    fired = {(a.rule, a.device_id) for a in evaluate([SLOW, REJECTS], [], figures, [], NOW)}
    assert fired == {("slow", "a"), ("rejects", "b")}


def test_class_rule_needs_label_confidence_and_recency() -> None:
    events = [EventRow(device_id="a", ts_ms=NOW - 1000, type="new", label="person", score=0.9),
              EventRow(device_id="b", ts_ms=NOW - 1000, type="new", label="person", score=0.7),
              EventRow(device_id="c", ts_ms=NOW - 120_000, type="new", label="person", score=0.99),
              EventRow(device_id="d", ts_ms=NOW, type="new", label="cat", score=0.99)]
    assert [a.device_id for a in evaluate([PERSON], [], {}, events, NOW)] == ["a"]


def test_tracker_announces_start_and_end_once_and_keeps_since() -> None:
    tracker = AlertTracker()
    slow = evaluate([SLOW], [], {"a": {"e2e_ms_p95": 80.0}}, [], NOW)
    started, ended = tracker.update(slow, NOW)
    assert [a.device_id for a in started] == ["a"] and ended == []
    started, ended = tracker.update(evaluate([SLOW], [], {"a": {"e2e_ms_p95": 90.0}}, [], NOW), NOW + 5000)
    assert started == [] and ended == []
    assert tracker.active()[0].since_ms == NOW and tracker.active()[0].value == 90.0
    started, ended = tracker.update([], NOW + 9000)
    assert started == [] and [a.device_id for a in ended] == ["a"] and tracker.active() == []


@pytest.mark.parametrize(("rule", "words"), [
    ({"kind": "metric", "name": "x", "metric": "e2e_p95", "op": ">", "threshold": 1}, "not declared in shared/metrics"),
    ({"kind": "metric", "name": "x", "metric": "fps", "op": "=>", "threshold": 1}, "'<', '<=', '>' or '>='"),
    ({"kind": "offline", "name": "bad/name"}, "alert rule name"),
    ({"kind": "sometimes", "name": "x"}, "does not match any of the expected tags"),
])
def test_bad_rule_is_refused_with_a_reason(rule: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        WebConfig.model_validate({"alerts": [rule]})


def test_plain_password_in_config_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a plain password"):
        WebConfig.model_validate({"users": [{"name": "a", "role": "operator", "password_hash": "hunter2"}]})


def test_alerts_reach_mqtt_retained_and_clear(mosquitto: Broker) -> None:
    feed = MqttFeed("lab", mosquitto.host, mosquitto.port, EventBuffer(), FigureBuffer())
    feed.start()
    # A witness subscribed before anything is published: once it has seen a message, the broker holds it, so a
    # client that subscribes afterwards can only get it as a retained message (no race with the live delivery).
    witness = MqttProbe(mosquitto, "edgeferry/lab/alerts/#")
    try:
        [alert] = evaluate([SLOW], [], {"cam-1": {"e2e_ms_p95": 80.0}}, [], NOW)
        topic = alert_topic("lab", alert)
        assert topic == "edgeferry/lab/alerts/slow/cam-1"
        feed.publish_alerts([alert], [])
        witness.wait_for(lambda m: m.topic == topic and b"firing" in m.payload, what="firing alert")
        late = MqttProbe(mosquitto, "edgeferry/lab/alerts/#")  # subscribes after: gets the retained alert
        msg = late.wait_for(lambda m: m.topic == topic, what="retained alert")
        assert msg.retain and json.loads(msg.payload)["state"] == "firing"
        assert json.loads(msg.payload)["value"] == 80.0
        late.close()
        feed.publish_alerts([], [alert])
        witness.wait_for(lambda m: m.topic == topic and b"resolved" in m.payload, what="resolved")
        witness.wait_for(lambda m: m.topic == topic and m.payload == b"", what="retained alert cleared")
        after = MqttProbe(mosquitto, "edgeferry/lab/alerts/#")
        after.publish("edgeferry/lab/alerts/probe/x", "done")
        after.wait_for(lambda m: m.topic.endswith("/probe/x"), what="own message")
        assert after.on(topic) == []  # cleared: nothing retained any more
        after.close()
    finally:
        witness.close()
        feed.stop()


def test_feed_reads_events_and_telemetry_from_the_broker(mosquitto: Broker) -> None:
    events, figures = EventBuffer(), FigureBuffer()
    feed = MqttFeed("lab", mosquitto.host, mosquitto.port, events, figures)
    feed.start()
    probe = MqttProbe(mosquitto)
    try:
        env = {"device_id": "cam-1", "boot_id": "b", "seq": 1, "ts": NOW}
        probe.publish("edgeferry/lab/cam-1/telemetry", json.dumps({**env, "fps": 12.5, "class_counts": {"1": 3}}))
        probe.publish("edgeferry/lab/cam-1/events", json.dumps({**env, "type": "new", "after": {
            "label": "person", "score": 0.93, "frame": 7, "model_version": 2}}))
        probe.publish("edgeferry/lab/cam-1/events", b"not json")
        eventually(lambda: figures.latest().get("cam-1"), 10, "figures")
        assert figures.latest()["cam-1"] == {"fps": 12.5}
        [e] = eventually(lambda: events.events("cam-1", 0, 10), 10, "event")
        assert (e.label, e.score, e.frame, e.model_version) == ("person", 0.93, 7, 2)
        eventually(lambda: feed.refused["cam-1"] == 1, 10, "malformed counted against its device")
    finally:
        probe.close()
        feed.stop()
