"""The `detection:` section: in the agent's config, described field by field, strict, and its snapshot directory out
of a command's reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from edge.config import AgentConfig
from edge.detection import config as detection_config
from edge.detection.config import DetectionConfig
from edge.live_config import LiveConfig
from shared.config_loader import load_config
from shared.errors import ConfigError

TRIANGLE = [[0, 0], [100, 0], [0, 100]]


def models() -> list[type[BaseModel]]:
    return [v for v in vars(detection_config).values()
            if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == detection_config.__name__]


@pytest.mark.parametrize("model", models(), ids=lambda m: m.__name__)
def test_every_field_is_described_and_unknown_keys_are_refused(model: type[BaseModel]) -> None:
    assert all(f.description for f in model.model_fields.values())
    assert model.model_config.get("extra") == "forbid"


def test_an_agent_config_file_carries_zones_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "source: {type: synthetic}\n"
        "detection:\n"
        "  objects: [person, car]\n"
        "  filters: {car: {min_score: 0.7, min_area: 400}}\n"
        "  zones:\n"
        "    driveway: {coordinates: [[0, 300], [640, 300], [640, 480], [0, 480]], loitering_time_s: 30}\n"
    )
    cfg = load_config(AgentConfig, path=path, environ={})
    assert cfg.detection.zones["driveway"].loitering_time_s == 30
    assert cfg.detection.filter_for("car").min_area == 400 and cfg.detection.filter_for("person").min_score == 0.5


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"zones": {"drive way": {"coordinates": TRIANGLE}}}, "zone name"),
        ({"zones": {"z": {"coordinates": [[0, 0], [1, 1]]}}}, "at least 3"),
        ({"zones": {"z": {"coordinates": [[0, 0], [1, "nan"], [2, 2]]}}}, "finite"),
        ({"zones": {"z": {"coordinates": TRIANGLE, "min_area": 10, "max_area": 5}}}, "above max_area"),
        ({"filters": {"car": {"min_score": 1.5}}}, "less than or equal"),
        ({"tracker": {"low_score": 0.6, "high_score": 0.5}}, "above high_score"),
        ({"masks": [[[0, 0], [1e9, 0], [0, 1]]]}, "less than or equal"),
        ({"snapshots": {"max_bytes": 10}}, "greater than or equal"),
        ({"snapshots": {"max_bytes": 600_000}}, "less than or equal"),  # would not fit the broker's 1 MiB packets
        ({"zones": {"z": {"coordinates": TRIANGLE, "colour": "red"}}}, "Extra inputs"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(bad: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        DetectionConfig.model_validate(bad)


def test_a_command_cannot_move_the_snapshot_directory(tmp_path: Path) -> None:
    def loader(overrides: Any) -> AgentConfig:
        return load_config(AgentConfig, flags={"source.type": "synthetic", **overrides}, environ={})

    live = LiveConfig(loader({}), loader)
    with pytest.raises(ConfigError, match=r"detection\.snapshots\.dir"):
        live.apply({"detection.snapshots.dir": "/etc"}, "command")
    assert live.cfg.detection.snapshots.dir == Path(".edge-cache/snapshots")
