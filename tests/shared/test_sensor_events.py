"""Anomaly alert payloads: every device-sent value bounded and consistent, one topic per device."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.sensor_events import AnomalyAlertPayload, SensorTopics
from shared.topics import DeviceTopics

GOOD: dict[str, Any] = {
    "device_id": "dev-1", "boot_id": "b1", "seq": 3, "ts": 1_700_000_000_000, "type": "new",
    "alert_id": "1700000000000-1", "stream": "sensor_mqtt:plant/line1", "score": 3.5, "peak_score": 3.5,
    "threshold": 1.2, "channels": [{"channel": "acc_x", "error": 3.5}], "windows_over": 3, "k": 3, "n": 5,
    "started_ms": 1_700_000_000_000, "window": 42,
}


def test_a_new_alert_round_trips() -> None:
    alert = AnomalyAlertPayload.model_validate(GOOD)
    assert AnomalyAlertPayload.model_validate_json(alert.model_dump_json()) == alert


@pytest.mark.parametrize(
    "change",
    [
        {"score": float("nan")},
        {"threshold": float("inf")},
        {"score": -1.0},
        {"stream": "x" * 200},
        {"stream": "bad\x00name"},
        {"channels": [{"channel": "a/b", "error": 1.0}]},
        {"channels": [{"channel": f"c{i}", "error": 1.0} for i in range(17)]},
        {"k": 6},
        {"windows_over": 9},
        {"end_ms": 1_700_000_001_000},
        {"type": "end"},
        {"peak_score": 1.0},
        {"alert_id": "a/b"},
        {"extra": 1},
    ],
)
def test_malformed_alerts_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AnomalyAlertPayload.model_validate({**GOOD, **change})


def test_alerts_have_their_own_topic() -> None:
    assert SensorTopics(DeviceTopics("lab", "dev-1")).alerts == "edgeferry/lab/dev-1/sensor/alerts"
