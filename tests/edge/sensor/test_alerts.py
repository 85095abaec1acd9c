"""Anomaly alerts: k of the last n windows over the threshold fire one alert, naming the worst channels; it ends once
the windows clear, and a cooldown keeps a flapping stream from re-alerting at once."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from edge.sensor.alerts import AlertEvent, AlertTracker, alert_threshold
from edge.sensor.config import AlertConfig
from shared.sensor_events import AnomalyAlertPayload
from shared.tasks.anomaly import AnomalyScore

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x"]
THRESHOLD = 1.0
ENVELOPE = {"device_id": "dev-1", "boot_id": "b1", "seq": 1, "ts": 1_700_000_000_000}


def score(value: float, worst: tuple[int, ...] = (2, 0, 1)) -> AnomalyScore:
    errors = tuple(value / (i + 1) for i in range(len(worst)))
    return AnomalyScore(value, THRESHOLD, value > THRESHOLD, worst, errors)


def run(tracker: AlertTracker, values: list[float], start: int = 0, hop_s: float = 1.0) -> list[tuple[int, AlertEvent]]:
    out = []
    for i, v in enumerate(values, start):
        event = tracker.update(score(v), i, 1000.0 + i * hop_s)
        if event is not None:
            out.append((i, event))
    return out


def tracker(**kw: float) -> AlertTracker:
    return AlertTracker(AlertConfig(**kw), "sensor_mqtt:line1", CHANNELS, THRESHOLD)


def test_three_of_five_over_the_threshold_fire_once_and_name_the_worst_channels() -> None:
    events = run(tracker(), [0.1, 2.0, 0.1, 3.0, 0.2, 2.5, 4.0, 3.0])
    assert [(i, e.type) for i, e in events] == [(5, "new")]
    new = events[0][1]
    assert new.windows_over == 3 and new.score == 2.5 and new.threshold == THRESHOLD
    assert [name for name, _ in new.channels] == ["acc_z", "acc_x", "acc_y"]


def test_two_of_five_never_fire() -> None:
    assert run(tracker(), [2.0, 0.1, 0.1, 3.0, 0.1, 0.1, 0.1] * 8) == []


def test_an_alert_ends_after_n_clear_windows_with_its_peak() -> None:
    events = run(tracker(), [2.0, 2.0, 2.0, 9.0, 2.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert [(i, e.type) for i, e in events] == [(2, "new"), (9, "end")]
    end = events[1][1]
    assert end.peak_score == 9.0 and end.alert_id == events[0][1].alert_id and end.end_s == 1009.0


def test_a_window_over_the_threshold_while_clearing_restarts_the_clear_count() -> None:
    events = run(tracker(), [2.0, 2.0, 2.0, 0.1, 0.1, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert [(i, e.type) for i, e in events] == [(2, "new"), (12, "end")]


def test_cooldown_holds_a_new_alert_until_it_passes() -> None:
    t = tracker(cooldown_s=10.0, clear_windows=1)
    events = run(t, [2.0, 2.0, 2.0, 0.1] + [2.0] * 12)
    kinds = [(i, e.type) for i, e in events]
    assert kinds[:2] == [(2, "new"), (3, "end")]
    # Over the threshold from window 4 on, but quiet until 1003 + 10 s.
    assert kinds[2] == (13, "new")


def test_k_above_n_is_refused_in_config() -> None:
    with pytest.raises(ValidationError, match="cannot exceed"):
        AlertConfig(k=6, n=5)


def test_the_threshold_comes_from_config_then_variant_then_head() -> None:
    assert alert_threshold(AlertConfig(threshold=5.0), 2.0, 1.0) == 5.0
    assert alert_threshold(AlertConfig(), 2.0, 1.0) == 2.0
    assert alert_threshold(AlertConfig(), None, 1.0) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        AlertTracker(AlertConfig(), "s", CHANNELS, float("nan"))


def test_an_event_becomes_a_bounded_payload() -> None:
    events = run(tracker(), [2.0, 2.0, 1e30])
    payload = events[0][1].payload(ENVELOPE, model_version=7)
    data = json.loads(payload.model_dump_json())
    assert data["type"] == "new" and data["score"] == 1e12 and data["model_version"] == 7
    assert data["channels"][0] == {"channel": "acc_z", "error": 1e12}
    assert AnomalyAlertPayload.model_validate_json(payload.model_dump_json()) == payload
