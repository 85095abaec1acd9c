"""The HIL contract: plans and targets validate strictly, and a plan expands to the actions a harness performs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from hil import plan
from hil.errors import HilError
from hil.plan import (
    Clear,
    Delay,
    FaultPlan,
    LinkDown,
    NetnsTarget,
    RateLimit,
    SshTarget,
    Stall,
    parse_plan,
    parse_run,
    timeline,
)

STEPS: list[dict[str, object]] = [
    {"kind": "delay", "at_s": 0, "ms": 50, "jitter_ms": 20},
    {"kind": "link_down", "at_s": 2, "duration_s": 5},
    {"kind": "rate_limit", "at_s": 7, "duration_s": 3, "rate_kbit": 64},
    {"kind": "drop_connections", "at_s": 8},
    {"kind": "stall", "at_s": 10, "duration_s": 2},
    {"kind": "link_up", "at_s": 12},
    {"kind": "clear", "at_s": 13},
]
OUTAGE = {"name": "outage", "steps": STEPS}
NETNS = {
    "kind": "netns", "name": "ef-1a2b3c4d", "host_if": "efh1a2b3c4d", "ns_if": "efn1a2b3c4d",
    "host_addr": "10.213.7.1/30", "ns_addr": "10.213.7.2/30",
}


def test_a_plan_in_json_parses_to_typed_steps_and_round_trips() -> None:
    plan = parse_plan(json.dumps(OUTAGE))
    assert [s.kind for s in plan.steps] == [s["kind"] for s in STEPS]
    rate = plan.steps[2]
    assert isinstance(rate, RateLimit) and (rate.rate_kbit, rate.burst_bytes, rate.latency_ms) == (64, 3200, 500)
    assert plan.end_s == 13
    assert parse_plan(plan.model_dump_json()) == plan


def test_every_field_of_the_contract_is_described() -> None:
    models = [m for m in vars(plan).values() if isinstance(m, type) and issubclass(m, BaseModel) and m is not BaseModel]
    assert len(models) >= 11
    undescribed = [f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items() if not f.description]
    assert undescribed == []


@pytest.mark.parametrize(
    ("step", "match"),
    [
        ({"kind": "link_down", "at_s": 0, "bogus": 1}, "Extra inputs"),
        ({"kind": "link_up", "at_s": 0, "duration_s": 3}, "Extra inputs"),
        ({"kind": "drop_connections", "at_s": 0, "duration_s": 3}, "Extra inputs"),
        ({"kind": "stall", "at_s": 0}, "duration_s"),
        ({"kind": "delay", "at_s": 0, "ms": 10, "jitter_ms": 20}, "must not exceed"),
        ({"kind": "rate_limit", "at_s": 0, "rate_kbit": 0}, "rate_kbit"),
        ({"kind": "rate_limit", "at_s": 0, "rate_kbit": 8, "burst_bytes": 100}, "burst_bytes"),
        ({"kind": "link_down", "at_s": -1}, "at_s"),
        ({"kind": "reboot", "at_s": 0}, "does not match any of the expected tags"),
    ],
)
def test_bad_steps_are_refused_with_the_field_named(step: dict[str, object], match: str) -> None:
    with pytest.raises(HilError, match=match):
        parse_plan({"steps": [step]})


def test_steps_out_of_start_order_are_refused() -> None:
    with pytest.raises(HilError, match="start order: step 1 \\(link_up\\) starts at 1 s"):
        parse_plan({"steps": [{"kind": "link_down", "at_s": 5}, {"kind": "link_up", "at_s": 1}]})


def test_empty_unbounded_and_malformed_plans_are_refused() -> None:
    with pytest.raises(HilError, match="at least 1"):
        parse_plan({"steps": []})
    with pytest.raises(HilError, match="at most 3600"):
        parse_plan({"steps": [{"kind": "stall", "at_s": 3000, "duration_s": 900}]})
    with pytest.raises(HilError, match="not valid JSON"):
        parse_plan("{steps: ")


def test_timeline_undoes_timed_faults_and_puts_undos_first_at_one_instant() -> None:
    plan = FaultPlan(
        steps=[
            RateLimit(at_s=0, duration_s=5, rate_kbit=32),
            LinkDown(at_s=1, duration_s=2),
            Stall(at_s=5, duration_s=1),
            Delay(at_s=5, ms=10),
            Clear(at_s=9),
        ]
    )
    got = [(a.at_s, a.step.kind, a.undo) for a in timeline(plan)]
    assert got == [
        (0, "rate_limit", False),
        (1, "link_down", False),
        (3, "link_down", True),
        (5, "rate_limit", True),
        (5, "stall", False),
        (5, "delay", False),
        (6, "stall", True),
        (9, "clear", False),
    ]


def test_same_step_object_twice_still_expands_in_plan_order() -> None:
    down = LinkDown(at_s=1, duration_s=1)
    plan = FaultPlan(steps=[down, Stall(at_s=1, duration_s=1), down])
    assert [(a.step.kind, a.undo) for a in timeline(plan)] == [
        ("link_down", False), ("stall", False), ("link_down", False),
        ("link_down", True), ("stall", True), ("link_down", True),
    ]


def test_targets_are_a_tagged_union_of_netns_and_ssh() -> None:
    run = parse_run({"target": NETNS, "plan": OUTAGE})
    assert isinstance(run.target, NetnsTarget) and str(run.target.ns_addr.ip) == "10.213.7.2"
    device = {"kind": "ssh", "host": "jetson-3.lab", "user": "ops", "key_path": "/k"}
    ssh = parse_run({"target": device, "plan": OUTAGE})
    assert isinstance(ssh.target, SshTarget) and ssh.target.port == 22 and ssh.target.key_path == Path("/k")
    assert parse_run(run.model_dump_json()) == run


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ns_addr": "10.213.8.2/30"}, "share one subnet"),
        ({"ns_addr": "10.213.7.1/30"}, "distinct"),
        ({"ns_if": "efh1a2b3c4d"}, "host_if and ns_if"),
        ({"host_if": "a-name-longer-than-15"}, "host_if"),
        ({"host_addr": "10.213.7.300/30"}, "host_addr"),
    ],
)
def test_bad_netns_targets_are_refused(change: dict[str, str], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        NetnsTarget.model_validate({**NETNS, **change})


def test_ssh_target_rejects_shell_metacharacters_and_unknown_kinds() -> None:
    with pytest.raises(ValidationError, match="host"):
        SshTarget(host="dev; rm -rf /", user="ops", key_path=Path("/k"))
    with pytest.raises(HilError, match="does not match any of the expected tags"):
        parse_run({"target": {"kind": "serial", "port": "/dev/ttyUSB0"}, "plan": OUTAGE})
