"""The simulator's per-stream figures: what an agent serving N cameras reports, one of them optionally stalled."""

from __future__ import annotations

import json

import pytest

from fleet.errors import SimulatorError
from fleet.sim.runner import SimOptions, Simulation
from fleet.sim.streams import StreamsSim
from shared.payloads import TelemetryPayload


def test_every_window_passes_the_contract_and_counters_only_grow() -> None:
    sim = StreamsSim(4, "seed", stalled="cam3")
    first, second = sim.tick(1.0), sim.tick(1.0)
    for name in sim.names:
        for figure in ("frames", "skipped", "stale", "source_errors"):
            assert second[name][figure] >= first[name][figure]
    assert second["cam3"]["source_errors"] == 2 and second["cam3"]["connected"] == 0
    assert second["cam0"]["frames"] > first["cam0"]["frames"] and second["cam0"]["connected"] == 1


def test_a_simulated_device_reports_its_streams_in_telemetry() -> None:
    sim = Simulation(SimOptions(devices=2, streams=3, stalled_stream=True))
    doc = json.loads(sim.devices[1].telemetry_payload(1_700_000_000_000, 5.0))
    payload = TelemetryPayload.model_validate(doc)
    assert payload.streams is not None and sorted(payload.streams) == ["cam0", "cam1", "cam2"]
    assert payload.streams["cam2"]["processed_fps"] == 0.0


@pytest.mark.parametrize("streams", [33, -1])
def test_a_stream_count_out_of_range_is_refused_in_one_line(streams: int) -> None:
    with pytest.raises(SimulatorError, match="--streams must be between 1 and 32"):
        Simulation(SimOptions(devices=1, streams=streams))
