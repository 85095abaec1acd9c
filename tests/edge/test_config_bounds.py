"""Values that would stall or spin a thread (inf, nan, absurdly small) are refused when the config loads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.config import TrainConfig
from edge.config import AgentConfig

BAD = ["inf", "-inf", "nan", float("inf"), float("nan"), 1e-300]

TIMED_KEYS = [
    ("sync", "poll_interval_s"),
    ("sync", "backoff_s"),
    ("mqtt", "telemetry_interval_s"),
    ("run", "duration_s"),
]


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_flush_timeout_refuses_non_finite_values(value: str) -> None:
    # 0 is a valid "do not wait"; only values that would wait forever are refused.
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"mqtt": {"flush_timeout_s": value}})


@pytest.mark.parametrize(("section", "key"), TIMED_KEYS)
@pytest.mark.parametrize("value", BAD)
def test_agent_timers_refuse_non_finite_and_tiny_values(section: str, key: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        AgentConfig.model_validate({section: {key: value}})
    assert f"{section}.{key}" in str(info.value)


@pytest.mark.parametrize("value", BAD)
def test_source_rates_refuse_non_finite_values(value: object) -> None:
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"source": {"type": "synthetic", "fps": value}})


def test_queue_sizes_are_bounded() -> None:
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"mqtt": {"command_queue": 10**9}})
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"source": {"type": "synthetic", "queue_size": 0}})


def test_sane_values_still_load() -> None:
    cfg = AgentConfig.model_validate(
        {"sync": {"poll_interval_s": 0.5}, "mqtt": {"telemetry_interval_s": 1}, "run": {"duration_s": 2}}
    )
    assert cfg.sync.poll_interval_s == 0.5
    assert cfg.run.duration_s == 2


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_trainer_refuses_non_finite_learning_rate(value: str) -> None:
    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"trainer": {"lr": value}})
