"""The two PSI gate kinds (class mix, anomaly score bins) read the same settings from a plan, each with its own
default threshold and label, and stay apart for the verdict, which judges each on its own distribution."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fleet.rollout.plan import PsiGate, parse_plan
from fleet.rollout.sensor_plan import ScorePsiGate


@pytest.mark.parametrize(("gate", "max_psi", "label"), [(PsiGate, 0.2, "class-mix psi <= 0.2"),
                                                        (ScorePsiGate, 0.25, "score psi <= 0.25")])
def test_each_psi_gate_keeps_its_defaults_label_and_field_order(gate: Any, max_psi: float, label: str) -> None:
    kind = gate.model_fields["kind"].annotation.__args__[0]
    g = gate(kind=kind)
    assert g.model_dump() == {"kind": kind, "max_psi": max_psi, "min_results": 200, "confidence": 0.95,
                              "min_windows": 6}
    assert list(g.model_dump()) == ["kind", "max_psi", "min_results", "confidence", "min_windows"]
    assert g.label == label
    assert gate(kind=kind, max_psi=0.1).label == label.replace(f"{max_psi:g}", "0.1")


@pytest.mark.parametrize("gate", [PsiGate, ScorePsiGate])
@pytest.mark.parametrize("bad", [{"max_psi": 0}, {"confidence": 1.0}, {"confidence": 0.4}, {"min_windows": 1},
                                 {"min_results": 0}, {"threshold": 0.2}])
def test_each_psi_gate_refuses_the_same_bad_settings(gate: Any, bad: dict[str, Any]) -> None:
    kind = gate.model_fields["kind"].annotation.__args__[0]
    with pytest.raises(ValidationError):
        gate(kind=kind, **bad)


def test_a_plan_names_either_kind_and_the_verdict_can_tell_them_apart() -> None:
    plan = parse_plan({"stages": [{"name": "all", "percent": 100, "gates": [
        {"kind": "psi", "max_psi": 0.15}, {"kind": "score_psi", "min_results": 50}]}]})
    psi, score = plan.stages[0].gates
    assert isinstance(psi, PsiGate) and not isinstance(psi, ScorePsiGate) and psi.max_psi == 0.15
    assert isinstance(score, ScorePsiGate) and not isinstance(score, PsiGate)
    assert (score.max_psi, score.min_results) == (0.25, 50)
