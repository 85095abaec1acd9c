"""Device-sent payloads are bounded: each poison of issues 14 and 19 is refused by the contract's models, and what
an honest agent sends still validates."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from edge.telemetry import EnvelopeFactory, Telemetry
from shared.metrics import BY_NAME, INT64_MAX, METRICS, check_figure
from shared.payloads import EventPayload, ReplyPayload, StatePayload, TelemetryPayload
from tests.fleet.poison import state_doc, state_poisons, telemetry_doc, telemetry_poisons


def test_every_metric_declares_a_type_and_a_finite_range() -> None:
    for m in METRICS:
        low, high = m.bounds
        assert math.isfinite(low) and math.isfinite(high) and low < high, m.name
        assert m.number_type in ("int", "float")
        if m.kind == "counter":
            assert (m.number_type, low, high) == ("int", 0.0, float(INT64_MAX)), m.name
    assert BY_NAME["cpu_pct"].bounds[1] > 100  # percent of one core: a multi-core agent goes over 100
    assert BY_NAME["gpu_pct"].bounds == (0.0, 100.0)


@pytest.mark.parametrize(("name", "value"), [
    ("fps", math.inf), ("fps", math.nan), ("fps", int("9" * 401)), ("frames", 2**63), ("frames", -1.0),
    ("frames", 2.5), ("model_version", 1e400), ("gpu_pct", 101.0), ("e2e_ms_p95", 1e12), ("fps", True),
    ("fps", "10"),
])
def test_a_figure_outside_its_declared_type_or_range_is_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        check_figure(name, value)


@pytest.mark.parametrize(("what", "payload"), telemetry_poisons("cam-9"))
def test_poisoned_telemetry_is_refused(what: str, payload: bytes) -> None:
    with pytest.raises(ValidationError):
        TelemetryPayload.model_validate_json(payload)


@pytest.mark.parametrize(("what", "payload"), state_poisons("cam-9"))
def test_poisoned_state_is_refused(what: str, payload: bytes) -> None:
    with pytest.raises(ValidationError):
        StatePayload.model_validate_json(payload)


def test_undeclared_telemetry_keys_are_dropped_not_stored() -> None:
    tel = TelemetryPayload.model_validate_json(json.dumps({**telemetry_doc("cam-9", 1), "junk": 1e300}))
    assert "junk" not in tel.figures() and tel.figures()["fps"] == 10.0


def test_replies_and_events_are_bounded() -> None:
    env = {"device_id": "cam-9", "boot_id": "b", "seq": 1, "ts": 1}
    with pytest.raises(ValidationError):
        ReplyPayload.model_validate({**env, "id": "\ud800", "command": "ping", "ok": True})
    with pytest.raises(ValidationError):
        ReplyPayload.model_validate({**env, "id": "r", "command": "ping", "ok": True, "result": {"a": math.nan}})
    nested: dict[str, object] = {}
    for _ in range(20):
        nested = {"n": nested}
    with pytest.raises(ValidationError):
        ReplyPayload.model_validate({**env, "id": "r", "command": "ping", "ok": True, "result": nested})
    with pytest.raises(ValidationError):
        EventPayload.model_validate({**env, "type": "new", "after": {"label": "x" * 200, "score": 0.5, "frame": 1,
                                                                      "model_version": 1}})


def test_what_an_honest_agent_sends_validates() -> None:
    telemetry = Telemetry(EnvelopeFactory("cam-9"))
    for m in METRICS:
        if m.kind == "counter":
            telemetry.count(m.name, 3)
        else:
            telemetry.set(m.name, min(m.bounds[1], 1.0 if m.number_type == "int" else 0.75))
    telemetry.set_class_counts(lambda: {"cat": 4, "dog": 1})
    payload = telemetry.build()
    again = TelemetryPayload.model_validate_json(payload.model_dump_json())
    assert set(again.figures()) == {m.name for m in METRICS} and again.class_counts == {"cat": 4, "dog": 1}
    state = StatePayload.model_validate(state_doc("cam-9", degraded={"outbox": "OSError: [Errno 28] No space left"},
                                                  hardware={"cpu_features": ["avx2"], "cuda": False, "gpu": None,
                                                            "compute_capability": None, "tensorrt": None,
                                                            "backends": "onnxruntime", "runtime_devices": ["cpu"]}))
    assert state.telemetry_interval_s == 0.5
