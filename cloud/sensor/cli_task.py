"""How `edgeferry train` tells a sensor job from an image job, and its flags in the sensor config's keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud.sensor.config import SENSOR_TASKS
from shared.config_loader import read_yaml
from shared.errors import ConfigError


def sensor_task(task: str | None, config: Path | None) -> str | None:
    """The sensor task named by --task, else by the config file's `task:`; None for an image job."""
    if task is not None:
        return task if task in SENSOR_TASKS else None
    if config is None or not config.is_file():
        return None
    try:
        named = read_yaml(config).get("task")
    except (ConfigError, AttributeError):
        return None  # the image loader reports the file's problem in its own words
    return named if isinstance(named, str) and named in SENSOR_TASKS else None


def sensor_flags(task: str, given: dict[str, Any], data: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The image command's flags that a sensor job has too, plus --task and --data, with their spellings."""
    shared = ("trainer.devices", "trainer.accelerator", "trainer.max_epochs", "trainer.seed", "publish.store.uri",
              "publish.name", "publish.signing_key", "publish.enabled")
    flags = {k: given.get(k) for k in shared}
    flags["task"] = task
    labels = {"task": "--task", "data.source": "--data", "data.dir": "--data"}
    if data is not None:
        flags.update({"data.source": "csv", "data.dir": str(data)})
    return flags, labels
