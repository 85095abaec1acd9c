"""A bad plan is one clear line before anything starts; the default plan is valid and grows 10 -> 50 -> 100."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.rollout.plan import MetricGate, PsiGate, RestartsGate, default_plan, load_plan, parse_plan
from shared.errors import ConfigError


def _plan(*stages: dict[str, object]) -> dict[str, object]:
    return {"stages": list(stages)}


def test_default_plan_is_ten_fifty_hundred_with_health_and_quality_gates() -> None:
    plan = default_plan()
    assert [s.percent for s in plan.stages] == [10, 50, 100]
    kinds = {type(g) for g in plan.stages[0].gates}
    assert kinds == {MetricGate, RestartsGate, PsiGate}
    metrics = {g.metric for g in plan.stages[0].gates if isinstance(g, MetricGate)}
    assert {"e2e_ms_p95", "conf_mean", "low_conf_share", "thread_errors", "cmd_errors"} <= metrics
    assert all(s.on_deadline == "pause" for s in plan.stages)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_plan({"name": "a", "percent": 10, "gates": [{"metric": "nope", "op": "<=", "threshold": 1}]},
               {"name": "b", "percent": 100}),
         "plan p.yaml: stages.0.gates.0.metric: metric 'nope' is not declared in shared/metrics.py"),
        (_plan({"name": "a", "percent": 10, "gates": [{"metric": "fps", "op": "=<", "threshold": 1}]},
               {"name": "b", "percent": 100}),
         "plan p.yaml: stages.0.gates.0.op: Input should be '<=', '>=', '<' or '>'"),
        (_plan({"name": "a", "percent": 50}, {"name": "b", "percent": 10}, {"name": "c", "percent": 100}),
         "plan p.yaml: stages: stage shares must increase from stage to stage, got [50.0, 10.0, 100.0]"),
        (_plan({"name": "a", "percent": 10}, {"name": "b", "percent": 60}),
         "the last stage must take 100 percent of the group, got 60"),
        (_plan({"name": "a", "percent": 10, "gates": [{"kind": "psx"}]}, {"name": "b", "percent": 100}),
         "stages.0.gates.0: unknown gate kind 'psx'; gate kinds are metric, restarts, psi and score_psi"),
        (_plan({"name": "a", "percent": 10, "soak_s": 600, "deadline_s": 60}, {"name": "b", "percent": 100}),
         "deadline_s (60) is shorter than soak_s (600)"),
        (_plan({"name": "a", "percent": 10, "on_deadline": "explode"}, {"name": "b", "percent": 100}),
         "stages.0.on_deadline: Input should be 'pause' or 'fail'"),
        (_plan({"name": "a", "percent": 100, "gates": [{"metric": "fps", "op": ">", "threshold": 1, "colour": 1}]}),
         "stages.0.gates.0.colour: Extra inputs are not permitted"),
        ({"stages": []}, "stages: List should have at least 1 item"),
    ],
)
def test_bad_plan_is_one_line_naming_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_plan(data, "p.yaml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_plan_file_round_trip_and_bad_yaml(tmp_path: Path) -> None:
    good = tmp_path / "plan.yaml"
    good.write_text(
        "stages:\n"
        "  - {name: canary, percent: 20, soak_s: 60, gates: [{metric: e2e_ms_p95, op: '<=', threshold: 40}]}\n"
        "  - {name: all, percent: 100, gates: [{kind: psi, max_psi: 0.1}, {kind: restarts}]}\n"
    )
    plan = load_plan(good)
    assert plan.stages[0].gates[0] == MetricGate(metric="e2e_ms_p95", op="<=", threshold=40)
    assert isinstance(plan.stages[1].gates[0], PsiGate) and plan.stages[1].gates[0].max_psi == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [ {name: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_plan(bad)
