"""Object event and snapshot payloads: Frigate's shape, every device-sent value bounded, topic-safe ids."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.object_events import ObjectEventPayload, ObjectState, ObjectTopics, SnapshotPayload, ZoneCounts
from shared.topics import DeviceTopics

ENVELOPE = {"device_id": "cam-1", "boot_id": "b1", "seq": 3, "ts": 1_700_000_000_000}


def state(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "1700000000000-4", "label": "person", "class_id": 0, "score": 0.8, "top_score": 0.9,
        "box": [10, 20, 50, 120], "area": 4000, "current_zones": ["yard"], "entered_zones": ["yard"],
        "first_seen_ms": 1_700_000_000_000, "last_seen_ms": 1_700_000_001_000, "frame_time_ms": 1_700_000_001_000,
        "frame": 10,
    }
    base.update(kw)
    return base


def test_an_update_event_round_trips_in_frigates_shape() -> None:
    raw = {**ENVELOPE, "type": "update", "before": state(current_zones=[]), "after": state()}
    event = ObjectEventPayload.model_validate_json(json.dumps(raw))
    data = json.loads(event.model_dump_json())
    assert data["type"] == "update" and data["before"]["current_zones"] == []
    assert data["after"]["id"] == raw["after"]["id"]
    assert set(data["after"]) >= {"label", "score", "top_score", "box", "current_zones", "entered_zones",
                                  "first_seen_ms", "last_seen_ms", "stationary", "loitering", "frame_time_ms"}


@pytest.mark.parametrize(
    "bad",
    [
        {"score": float("nan")},
        {"score": 1.5},
        {"box": [0, 0, 1e12, 1]},
        {"label": "x" * 200},
        {"label": "bad\x00label"},
        {"id": "a/b"},
        {"id": "+"},
        {"current_zones": ["no spaces"]},
        {"current_zones": [f"z{i}" for i in range(65)]},
        {"first_seen_ms": -1},
        {"class_id": 2_000_000},
        {"extra": 1},
    ],
)
def test_out_of_bounds_object_states_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ObjectState.model_validate(state(**bad))


def test_a_snapshot_must_hold_base64_jpeg() -> None:
    fields = {**ENVELOPE, "object_id": "1-1", "label": "car", "score": 0.9, "box": [0, 0, 10, 10],
              "crop": [0, 0, 12, 12], "frame_time_ms": 5, "width": 12, "height": 12}
    good = base64.b64encode(b"\xff\xd8\xff\xe0rest").decode()
    assert SnapshotPayload(**fields, jpeg=good).jpeg == good
    for bad in ("not base64!", base64.b64encode(b"GIF89a").decode()):
        with pytest.raises(ValidationError):
            SnapshotPayload(**fields, jpeg=bad)


def test_zone_count_keys_are_zones_or_zone_slash_label() -> None:
    counts = TypeAdapter(ZoneCounts)
    assert counts.validate_python({"yard": 2, "yard/person": 1, "yard/fire hydrant": 1}) == {
        "yard": 2, "yard/person": 1, "yard/fire hydrant": 1}
    for bad in ({"bad zone": 1}, {"yard/": 1}, {"yard": -1}, {"yard/x\x01": 1}):
        with pytest.raises(ValidationError):
            counts.validate_python(bad)


def test_object_topics_sit_under_the_device_and_refuse_wildcard_ids() -> None:
    topics = ObjectTopics(DeviceTopics("lab", "cam-1"))
    assert topics.events == "edgeferry/lab/cam-1/objects/events"
    assert topics.snapshot("1700-3") == "edgeferry/lab/cam-1/objects/snapshots/1700-3"
    with pytest.raises(ValueError, match="topic level"):
        topics.snapshot("a/#")


def test_the_largest_snapshot_fits_the_brokers_packet_limit() -> None:
    from shared.object_events import MAX_SNAPSHOT_BYTES

    biggest = base64.b64encode(b"\xff\xd8" + bytes(MAX_SNAPSHOT_BYTES - 2)).decode()
    payload = SnapshotPayload(**ENVELOPE, object_id="1700000000000-99", label="x" * 128, score=1.0,
                              box=(0, 0, 65536, 65536), crop=(0, 0, 65536, 65536), frame_time_ms=2**62,
                              width=8192, height=8192, jpeg=biggest)
    broker_limit = 1024 * 1024  # deploy/mosquitto/mosquitto.conf max_packet_size, topic and header included
    assert len(payload.model_dump_json()) + 200 < broker_limit
