"""One place where config files, EDGEFERRY_* environment variables and CLI flags become a typed tree."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from shared.errors import ConfigError

T = TypeVar("T", bound=BaseModel)
ENV_PREFIX = "EDGEFERRY_"


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file, with errors that name the file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def env_overrides(environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """EDGEFERRY_MQTT__PORT=1884 becomes {'mqtt': {'port': 1884}} (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix) or key == f"{prefix}CONFIG":
            continue
        path = [p.lower() for p in key[len(prefix) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
    return tree


def dotted_overrides(flags: Mapping[str, Any]) -> dict[str, Any]:
    """{'mqtt.port': 1884} becomes {'mqtt': {'port': 1884}}; None values mean 'flag not given'."""
    tree: dict[str, Any] = {}
    for key, value in flags.items():
        if value is not None:
            _set_path(tree, key.split("."), value)
    return tree


def load_config(
    cls: type[T],
    path: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    known_env_roots: set[str] | None = None,
) -> T:
    """Defaults < file < environment < flags, validated once into cls."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = read_yaml(path) if path else {}
    env = env_overrides(environ)
    roots = known_env_roots if known_env_roots is not None else set(cls.model_fields)
    env = {k: v for k, v in env.items() if k in roots}
    data = _merge(_merge(data, env), dotted_overrides(flags or {}))
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        src = f" (from {path})" if path else ""
        raise ConfigError(f"config value {loc}{src}: {first['msg']}") from exc


def config_digest(cfg: BaseModel) -> str:
    """Short digest of a resolved config, so telemetry shows which config a device runs."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
