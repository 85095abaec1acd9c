"""The `sensor:` section: part of the agent config, strict (typos refused), every field described."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from edge.config import AgentConfig
from edge.sensor.config import AlertConfig, InputCheckConfig, SensorConfig


def test_the_agent_config_carries_the_alert_rule() -> None:
    cfg = AgentConfig.model_validate({"sensor": {"alerts": {"k": 2, "n": 4, "cooldown_s": 5}}})
    assert (cfg.sensor.alerts.k, cfg.sensor.alerts.n, cfg.sensor.alerts.clear_after) == (2, 4, 4)
    assert AgentConfig().sensor.alerts.k == 3 and AgentConfig().sensor.alerts.n == 5


@pytest.mark.parametrize(
    "bad",
    [{"alerts": {"kk": 3}}, {"alerts": {"k": 0}}, {"alerts": {"cooldown_s": float("nan")}},
     {"alerts": {"threshold": -1}}, {"input": {"rate_tolerance": 0}}, {"input": {"max_gap_periods": 1.0}}],
)
def test_bad_sensor_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"sensor": bad})


@pytest.mark.parametrize("model", [SensorConfig, AlertConfig, InputCheckConfig])
def test_every_field_says_what_it_does(model: type[BaseModel]) -> None:
    assert [name for name, f in model.model_fields.items() if not f.description] == []
