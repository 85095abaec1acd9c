"""Defaults < file < EDGEFERRY_* environment < flags, with one clear error for a bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.config import TrainConfig
from edge.config import AgentConfig
from shared.config_loader import (
    config_digest,
    env_overrides,
    load_config,
    parse_dotted_args,
    parse_set_pairs,
    read_yaml,
)
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


def one_line_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(AgentConfig, path, {}, {})
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (bytes(range(256)) * 4, "not UTF-8 text \\(byte 0x80 at offset 128\\)"),  # a binary file
        ("mqtt:\n  host: caf\xe9\n".encode("latin-1"), "not UTF-8 text \\(byte 0xe9 at offset 17\\)"),
        (b"mqtt:\n  host: a\x00b\n", "binary \\(it holds NUL bytes\\)"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 9, "binary"),
        (b"mqtt:\n  port: 1\n bad: [\n", "not valid YAML: line 3, column 2: expected <block end>"),
        (b"- a\n- b\n", "must hold a mapping .* not a list"),
        (b"just text\n", "must hold a mapping .* not a str"),
        (b"[" * 2000, "not valid YAML|nested too deeply"),
    ],
)
def test_unusable_files_give_one_line_naming_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    f = tmp_path / "edge.yaml"
    f.write_bytes(content)
    assert re.search(match, one_line_error(f))


def test_a_directory_or_an_unreadable_file_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Is a directory" in one_line_error(tmp_path)
    f = tmp_path / "edge.yaml"
    f.write_text("mqtt: {}\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads any file, so chmod 000 proves nothing here
    assert "cannot read config file" in one_line_error(f) and "Permission denied" in one_line_error(f)


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing set yet\n")
    assert read_yaml(f) == {}


def test_a_bad_value_names_the_source_it_came_from(tmp_path: Path) -> None:
    f = tmp_path / "edge.yaml"
    f.write_text("mqtt:\n  port: 70000\n")

    def error(flags: dict[str, object], environ: dict[str, str], **kw: object) -> str:
        with pytest.raises(ConfigError) as info:
            load_config(AgentConfig, f, flags, environ, **kw)  # type: ignore[arg-type]
        return str(info.value)

    assert error({}, {}) == (
        f"config value mqtt.port from config file {f}: Input should be less than or equal to 65535 (got 70000)"
    )
    assert "mqtt.port from environment EDGEFERRY_MQTT__PORT: Input should be a valid integer" in error(
        {}, {"EDGEFERRY_MQTT__PORT": "lots"}
    )
    assert "mqtt.port from flag --mqtt.port:" in error({"mqtt.port": 99999}, {"EDGEFERRY_MQTT__PORT": "1"})
    assert "mqtt.port from flag --port:" in error({"mqtt.port": -1}, {}, flag_labels={"mqtt.port": "--port"})
    # A value in the file that a flag or variable replaced is not the one reported.
    f.write_text("mqtt:\n  port: 1884\n  keepalive_s: -5\n")
    assert "mqtt.keepalive_s from config file" in error({"mqtt.port": 1999}, {})


def test_union_errors_point_at_the_key_the_user_wrote(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config value source\.type from flag --source\.type: Input tag 'webcam'"):
        load_config(AgentConfig, None, {"source.type": "webcam"}, {})
    with pytest.raises(ConfigError, match=r"^config value source\.pathx from environment EDGEFERRY_SOURCE__PATHX:"):
        flags = {"source.type": "image_dir", "source.path": "/d"}
        load_config(AgentConfig, None, flags, {"EDGEFERRY_SOURCE__PATHX": "1"})


def test_a_union_option_without_its_kind_says_to_give_the_kind() -> None:
    with pytest.raises(ConfigError, match=r"^config value source\.type from flag --source\.queue_size: the kind must"):
        load_config(AgentConfig, None, {"source.queue_size": 8}, {})


def test_dotted_args_and_set_pairs_parse_the_same_way() -> None:
    args = ["--mqtt.port=1884", "--source.path", "cam.mp4", "--events.min-score=0.5", "--sync.variant="]
    assert parse_dotted_args(args) == {
        "mqtt.port": 1884, "source.path": "cam.mp4", "events.min_score": 0.5, "sync.variant": "",
    }
    assert parse_set_pairs(["mqtt.port=1884", "device.tags=[a, b]", "x.y={"]) == {
        "mqtt.port": 1884, "device.tags": ["a", "b"], "x.y": "{",
    }
    for bad in (["stray"], ["--noDot=1"], ["--mqtt.port"]):
        with pytest.raises(ConfigError):
            parse_dotted_args(bad)
    with pytest.raises(ConfigError, match=r"--set expects section\.key=value"):
        parse_set_pairs(["mqtt.port"])


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
