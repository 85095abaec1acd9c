"""The fast telemetry reader accepts only what the pydantic contract accepts, reads it the same, and takes an
honest agent's report without the model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet.registry import TelemetryReading
from fleet.telemetry_reader import read_telemetry
from shared.metrics import METRICS
from shared.payloads import Envelope, TelemetryPayload
from tests.fleet.poison import telemetry_poisons

NAMES = [m.name for m in METRICS]


def agent_report(seq: int = 7) -> dict[str, Any]:
    """Every figure a running agent reports (as floats, as edge.telemetry sends them) and ten class counts."""
    figures = {m.name: float(min(m.bounds[1], 3.0)) for m in METRICS if m.absent_when is None}
    return {"schema_version": 1, "device_id": "cam-0001", "boot_id": "3f2a9c", "seq": seq, "ts": 1_765_000_000_000,
            "replayed": False, **figures, "class_counts": {str(d): d for d in range(10)}}


def model_reading(payload: bytes) -> TelemetryReading | None:
    """What the contract makes of the payload; None when it refuses it."""
    try:
        return TelemetryReading.of(TelemetryPayload.model_validate_json(payload))
    except (ValidationError, ValueError):
        return None


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 0.5, 3.0, 1e308, -1e-300, 2**63 - 1, 2**63, 2**64, -(2**63), 86_400_000, 1e400]),
)
ODD = st.one_of(st.booleans(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
VALUES = st.one_of(NUMBERS, ODD)
IDS = st.one_of(st.text(max_size=70), st.sampled_from(["cam-1", "a", "x" * 64, "x" * 65, "-a", "a.b", "a\n", "ä"]))
LABELS = st.one_of(st.text(max_size=130), st.sampled_from(["", "cat", "x" * 128, "x" * 129, "a\x00", "a\tb"]))


COUNTS = st.one_of(st.integers(0, 1000), st.integers(0, 1000), NUMBERS, ODD)


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    """An agent's report with one or two things replaced by anything a device might send."""
    doc = agent_report(draw(st.integers(0, 2**63 - 1)))
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["figure", "figure", "figure", "envelope", "id", "counts", "label", "extra",
                                     "drop"]))
        if kind == "figure":
            doc[draw(st.sampled_from(NAMES))] = draw(st.one_of(NUMBERS, NUMBERS, ODD))
        elif kind == "envelope":
            doc[draw(st.sampled_from(["schema_version", "seq", "ts", "replayed"]))] = draw(VALUES)
        elif kind == "id":
            doc[draw(st.sampled_from(["device_id", "boot_id"]))] = draw(st.one_of(IDS, VALUES))
        elif kind == "counts":
            doc["class_counts"] = draw(st.one_of(st.none(), VALUES, st.dictionaries(LABELS, COUNTS, max_size=3)))
        elif kind == "label":
            doc["class_counts"] = {draw(LABELS): draw(COUNTS)}
        elif kind == "extra":
            doc[draw(st.one_of(st.text(max_size=8), st.sampled_from(["zone_counts", "model_extra", "figures"])))] = (
                draw(VALUES))
        else:
            doc.pop(draw(st.sampled_from(sorted(doc))), None)
    return doc


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports())
def test_the_fast_path_accepts_only_what_the_contract_accepts_and_reads_it_the_same(doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()  # NaN, Infinity and 70-bit integers written as a device could
    fast = read_telemetry(payload)
    if fast is not None:
        assert model_reading(payload) == fast


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_bytes_that_are_no_report_never_pass_the_fast_path_unless_the_contract_takes_them(payload: bytes) -> None:
    fast = read_telemetry(payload)
    if fast is not None:
        assert model_reading(payload) == fast


def test_an_agents_report_takes_the_fast_path_with_the_contracts_reading() -> None:
    payload = json.dumps(agent_report()).encode()
    fast = read_telemetry(payload)
    assert fast is not None
    assert fast == model_reading(payload)
    assert len(fast.figures) == len([m for m in METRICS if m.absent_when is None])


def test_undeclared_figures_are_dropped_on_both_paths() -> None:
    payload = json.dumps({**agent_report(), "newer_agent_figure": "anything"}).encode()
    fast = read_telemetry(payload)
    assert fast is not None and "newer_agent_figure" not in fast.figures
    assert fast == model_reading(payload)


@pytest.mark.parametrize(("what", "payload"), telemetry_poisons("cam-0001"), ids=lambda v: str(v)[:30])
def test_every_poison_of_the_issues_leaves_the_fast_path_and_the_contract_refuses_it(what: str, payload: bytes) -> None:
    assert read_telemetry(payload) is None, what
    assert model_reading(payload) is None, what


EDGES: list[tuple[str, Any]] = [
    ("frames", 0.5), ("frames", -1), ("queue_depth", 2.5), ("fps", 1e7), ("fps", True), ("fps", "1"),
    ("frames", 2**63), ("model_version", -(2**63) - 1), ("schema_version", 1001), ("schema_version", -1),
    ("schema_version", 1.0), ("seq", 3.0), ("ts", -1), ("replayed", 1), ("replayed", "true"),
    ("device_id", "a\n"), ("device_id", "x" * 65), ("boot_id", "-b"), ("class_counts", {"x" * 129: 1}),
    ("class_counts", {"": 1}), ("class_counts", {"a\x7f": 1}), ("class_counts", {"a": 1.0}),
    ("class_counts", {"a": -1}), ("class_counts", {str(i): 1 for i in range(1025)}), ("class_counts", []),
]


@pytest.mark.parametrize(("field", "value"), EDGES, ids=lambda v: repr(v)[:20])
def test_each_edge_of_the_contract_leaves_the_fast_path(field: str, value: Any) -> None:
    payload = json.dumps({**agent_report(), field: value}).encode()
    assert read_telemetry(payload) is None
    fast_or_model = model_reading(payload)
    if fast_or_model is not None:  # a lax coercion the contract allows (3.0 for an int): the model reads it
        assert field in ("schema_version", "seq", "class_counts", "replayed")


@pytest.mark.parametrize("zones", [None, {"driveway": 2, "driveway/car": 1, "door": 0}])
def test_a_report_as_the_agent_serializes_it_takes_the_fast_path_zone_counts_or_not(
    zones: dict[str, int] | None,
) -> None:
    doc = agent_report()
    envelope = {k: doc.pop(k) for k in ("schema_version", "device_id", "boot_id", "seq", "ts", "replayed")}
    counts = doc.pop("class_counts")
    # The agent publishes model_dump_json(): zone_counts is there, null on a classifier.
    payload = TelemetryPayload.build(Envelope(**envelope), doc, counts, zones).model_dump_json().encode()
    fast = read_telemetry(payload)
    assert fast is not None and fast == model_reading(payload)
