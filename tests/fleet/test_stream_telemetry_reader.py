"""Telemetry as agents now send it (with `streams`) keeps the fast path where it can and reads like the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.telemetry import EnvelopeFactory, Telemetry
from fleet.registry import TelemetryReading
from fleet.sim.streams import StreamsSim
from fleet.telemetry_reader import read_telemetry
from shared.payloads import TelemetryPayload
from shared.streams import MAX_STREAM_FIGURES, MAX_STREAMS, STREAM_BY_NAME
from tests.fleet.test_telemetry_reader import IDS, NUMBERS, ODD, VALUES, agent_report, model_reading


def test_a_single_stream_agents_report_as_sent_takes_the_fast_path() -> None:
    payload = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 12.0}]).build().model_dump_json().encode()
    assert json.loads(payload)["streams"] is None
    fast = read_telemetry(payload)
    assert fast is not None and fast.figures["fps"] == 12.0


def test_a_multi_stream_report_as_sent_takes_the_fast_path_and_reads_like_the_contract() -> None:
    telemetry = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 12.0}])
    telemetry.set_stream_figures(lambda: {"gate": {"processed_fps": 6.0, "frames": 40.0},
                                          "yard": {"e2e_ms_p99": 31.5, "connected": 0.0}})
    payload = telemetry.build().model_dump_json().encode()
    fast = read_telemetry(payload)
    assert fast is not None
    assert fast == TelemetryReading.of(TelemetryPayload.model_validate_json(payload))
    assert fast.figures["fps"] == 12.0
    assert fast.streams == {"gate": {"processed_fps": 6.0, "frames": 40.0},
                            "yard": {"e2e_ms_p99": 31.5, "connected": 0.0}}


def test_a_simulated_four_camera_report_takes_the_fast_path() -> None:
    doc = {**agent_report(), "streams": StreamsSim(4, seed="t").tick(10.0)}
    fast = read_telemetry(json.dumps(doc).encode())
    assert fast is not None and fast.streams is not None and sorted(fast.streams) == ["cam0", "cam1", "cam2", "cam3"]
    assert fast == model_reading(json.dumps(doc).encode())


def test_a_newer_agents_undeclared_stream_figure_is_dropped_on_both_paths() -> None:
    payload = json.dumps({**agent_report(), "streams": {"gate": {"frames": 3, "newer_figure": 1.5}}}).encode()
    fast = read_telemetry(payload)
    assert fast is not None and fast.streams == {"gate": {"frames": 3.0}}
    assert fast == model_reading(payload)


# Each breaks the contract (or is a lax coercion only the model may decide on): never read by the fast path.
STREAM_EDGES: list[Any] = [
    {"gate": {"frames": -1}}, {"gate": {"frames": 2.5}}, {"gate": {"connected": 2}}, {"gate": {"frames": 2**63}},
    {"gate": {"capture_fps": "12"}}, {"gate": {"capture_fps": True}}, {"gate": {"capture_fps": None}},
    {"gate": {"newer_figure": "text"}}, {"gate": []}, {"gate": None},
    {"-gate": {}}, {"a/b": {}}, {"x" * 65: {}}, {"": {}}, {"gate\n": {}}, [], "gate",
    {f"s{i}": {} for i in range(MAX_STREAMS + 1)}, {"gate": {f"f{i}": 1.0 for i in range(MAX_STREAM_FIGURES + 1)}},
]

LAX = [{"gate": {"capture_fps": "12"}}, {"gate": {"capture_fps": True}}, {"gate": {"frames": 2**63}}]


@pytest.mark.parametrize("streams", STREAM_EDGES, ids=lambda v: repr(v)[:30])
def test_each_edge_of_the_stream_contract_leaves_the_fast_path(streams: Any) -> None:
    payload = json.dumps({**agent_report(), "streams": streams}).encode()
    assert read_telemetry(payload) is None
    model = model_reading(payload)
    if model is not None:  # a lax coercion ("12" for a float, true for 1.0, 2**63 as a float): the model decides
        assert streams in LAX


@pytest.mark.parametrize("figure", ["capture_fps", "newer_figure"])
@pytest.mark.parametrize("token", ["Infinity", "NaN", "1e400", "9" * 401])
def test_a_stream_figure_no_json_parser_agrees_on_is_refused(token: str, figure: str) -> None:
    doc = {**agent_report(), "streams": {"gate": {figure: "@@"}}}
    payload = json.dumps(doc).replace('"@@"', token).encode()
    assert read_telemetry(payload) is None
    assert model_reading(payload) is None


STREAM_VALUES = st.one_of(NUMBERS, NUMBERS, ODD)


@st.composite
def stream_reports(draw: st.DrawFn) -> dict[str, Any]:
    """A four-camera agent's report with one or two stream figures, names or shapes replaced by anything."""
    doc = {**agent_report(), "streams": StreamsSim(4, seed="h").tick(10.0)}
    streams = doc["streams"]
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["figure", "figure", "figure", "name", "shape", "drop"]))
        name = draw(st.sampled_from(sorted(streams) or ["cam0"]))
        if kind == "figure":
            if not isinstance(streams.get(name), dict):
                streams[name] = {}
            streams[name][draw(st.one_of(st.sampled_from(list(STREAM_BY_NAME)),
                                                        st.text(max_size=6)))] = draw(STREAM_VALUES)
        elif kind == "name":
            streams[draw(IDS)] = streams.pop(name, {})
        elif kind == "shape":
            streams[name] = draw(VALUES)
        else:
            streams.pop(name, None)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_reports())
def test_the_fast_path_takes_only_stream_figures_the_contract_takes_and_reads_them_the_same(
    doc: dict[str, Any],
) -> None:
    payload = json.dumps(doc).encode()  # NaN, Infinity and 70-bit integers written as a device could
    fast = read_telemetry(payload)
    if fast is not None:
        assert model_reading(payload) == fast
