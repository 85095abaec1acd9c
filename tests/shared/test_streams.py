"""The stream contract: names, per-stream figures in telemetry, and events that say which stream they are from."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import InvalidNameError
from shared.payloads import Envelope, EventPayload, TelemetryPayload
from shared.streams import DEFAULT_STREAM, check_stream_name, check_unique_streams

ENVELOPE = {"device_id": "dev-1", "boot_id": "b" * 32, "seq": 3, "ts": 1_700_000_000_000}


@pytest.mark.parametrize("name", ["front", "cam-2", "Dock_door_3"])
def test_topic_safe_names_are_stream_names(name: str) -> None:
    assert check_stream_name(name) == name


@pytest.mark.parametrize("name", ["", "front/door", "cam+", "#", "two words", "-lead"])
def test_names_that_would_break_a_topic_are_refused(name: str) -> None:
    with pytest.raises(InvalidNameError, match="stream name"):
        check_stream_name(name)


def test_a_name_used_twice_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'gate' is used twice"):
        check_unique_streams(["gate", "yard", "gate"])


def test_an_event_from_an_agent_older_than_streams_reads_as_the_default_stream() -> None:
    old = EventPayload.model_validate({**ENVELOPE, "type": "frame"})
    assert old.stream == DEFAULT_STREAM
    new = EventPayload.model_validate({**ENVELOPE, "type": "frame", "stream": "yard"})
    assert new.stream == "yard"
    with pytest.raises(ValidationError):
        EventPayload.model_validate({**ENVELOPE, "type": "frame", "stream": "yard/#"})


def test_telemetry_carries_each_streams_declared_figures_and_drops_undeclared_ones() -> None:
    payload = TelemetryPayload.build(
        Envelope(**ENVELOPE), {"fps": 30.0},
        streams={"yard": {"processed_fps": 12.5, "stale": 3, "e2e_ms_p99": 40.0, "from_the_future": 1.0}},
    )
    back = TelemetryPayload.model_validate_json(payload.model_dump_json())
    assert back.streams == {"yard": {"processed_fps": 12.5, "stale": 3.0, "e2e_ms_p99": 40.0}}
    assert TelemetryPayload.model_validate(ENVELOPE).streams is None


def test_a_stream_figure_outside_its_range_refuses_the_report() -> None:
    with pytest.raises(ValidationError, match="stale must be a whole number"):
        TelemetryPayload.model_validate({**ENVELOPE, "streams": {"yard": {"stale": 1.5}}})
    with pytest.raises(ValidationError):
        TelemetryPayload.model_validate({**ENVELOPE, "streams": {"bad name": {"stale": 1}}})
