"""Telemetry as agents now send it (with `streams`) keeps the fast path where it can and reads like the contract."""

from __future__ import annotations

import json

from edge.telemetry import EnvelopeFactory, Telemetry
from fleet.registry import TelemetryReading
from fleet.telemetry_reader import read_telemetry
from shared.payloads import TelemetryPayload


def test_a_single_stream_agents_report_as_sent_takes_the_fast_path() -> None:
    payload = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 12.0}]).build().model_dump_json().encode()
    assert json.loads(payload)["streams"] is None
    fast = read_telemetry(payload)
    assert fast is not None and fast.figures["fps"] == 12.0


def test_a_multi_stream_report_goes_to_the_contract_which_reads_its_flat_figures_the_same() -> None:
    telemetry = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 12.0}])
    telemetry.set_stream_figures(lambda: {"gate": {"processed_fps": 6.0}})
    payload = telemetry.build().model_dump_json().encode()
    assert read_telemetry(payload) is None
    reading = TelemetryReading.of(TelemetryPayload.model_validate_json(payload))
    assert reading.figures["fps"] == 12.0
