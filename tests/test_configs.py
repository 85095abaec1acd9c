"""Every shipped config loads as it is: a user copying one gets a working start, not a schema error."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import TrainConfig
from edge.config import AgentConfig
from shared.config_loader import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("edge-*.yaml")), ids=lambda p: p.name)
def test_agent_configs_load(path: Path) -> None:
    cfg = load_config(AgentConfig, path, environ={})
    assert cfg.sync.trusted_keys, "shipped agent configs trust a key; none runs unsigned packages"
    assert not cfg.sync.allow_unsigned and not cfg.device.allow_unsigned_commands


IMAGE_TRAIN = sorted(p for p in CONFIGS.glob("train-*.yaml") if not p.name.startswith("train-sensor"))


@pytest.mark.parametrize("path", IMAGE_TRAIN, ids=lambda p: p.name)
def test_train_configs_load(path: Path) -> None:
    load_config(TrainConfig, path, environ={})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("train-sensor*.yaml")), ids=lambda p: p.name)
def test_sensor_train_configs_load(path: Path) -> None:
    from cloud.sensor.cli_task import sensor_task
    from cloud.sensor.config import SensorTrainConfig

    cfg = load_config(SensorTrainConfig, path, environ={})
    assert sensor_task(None, path) == cfg.task, "edgeferry train picks the sensor pipeline from the file's task"
