"""Defaults < file < EDGEFERRY_* environment < flags, with one clear error for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import TrainConfig
from edge.config import AgentConfig
from shared.config_loader import config_digest, env_overrides, load_config
from shared.errors import ConfigError


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "edge.yaml"
    f.write_text("mqtt:\n  port: 1884\n  host: broker\ndevice:\n  fleet: lab\n")
    cfg = load_config(
        AgentConfig, f, {"mqtt.port": 1999}, {"EDGEFERRY_MQTT__HOST": "envhost", "EDGEFERRY_MQTT__PORT": "1885"}
    )
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.device.fleet) == ("envhost", 1999, "lab")


def test_env_values_are_typed() -> None:
    tree = env_overrides({"EDGEFERRY_RUN__MAX_FRAMES": "10", "EDGEFERRY_SYNC__ALLOW_UNSIGNED": "true", "OTHER": "1"})
    assert tree == {"run": {"max_frames": 10}, "sync": {"allow_unsigned": True}}


def test_discriminated_source_from_flags() -> None:
    cfg = load_config(AgentConfig, None, {"source.type": "image_dir", "source.path": "/data"}, {})
    assert cfg.source.type == "image_dir"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("mqtt:\n  port: 99999\n", "mqtt.port"),
        ("mqtt:\n  prot: 1\n", "mqtt.prot"),
        ("source:\n  type: webcam\n", "source"),
        ("- a\n", "mapping"),
        ("a: [\n", "YAML"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(AgentConfig, f, {}, {})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(TrainConfig, Path("/nonexistent.yaml"), {}, {})


def test_digest_changes_with_config() -> None:
    a = load_config(AgentConfig, None, {}, {})
    b = load_config(AgentConfig, None, {"mqtt.port": 2000}, {})
    assert config_digest(a) != config_digest(b)


def test_every_config_field_has_a_description() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel], seen: set[type]) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            for arg in _types(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                    seen.add(arg)
                    missing += walk(arg, seen)
        return missing

    assert walk(AgentConfig, set()) + walk(TrainConfig, set()) == []


def _types(annotation: object) -> list[object]:
    from typing import get_args

    args = get_args(annotation)
    out: list[object] = [annotation]
    for a in args:
        out += _types(a)
    return out
