"""One place where config files, EDGEFERRY_* environment variables and CLI flags become a typed tree.

A bad value is reported in one line that names the key and where the value came from: the config file, the
EDGEFERRY_* variable or the flag, so a user knows which of the three to fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from shared.errors import ConfigError

T = TypeVar("T", bound=BaseModel)
ENV_PREFIX = "EDGEFERRY_"
# Longest rendering of an offending value in an error line.
_VALUE_CHARS = 60

Key = tuple[str, ...]
# EDGEFERRY_ variables that are not config keys: set by the tools themselves, read outside any config tree.
NON_CONFIG_VARIABLES = frozenset({
    "EDGEFERRY_CONFIG", "EDGEFERRY_FLEET_CONFIG", "EDGEFERRY_MQTT_PASSWORD", "EDGEFERRY_EXTRAS",
    "EDGEFERRY_TORCH_CONSTRAINTS", "EDGEFERRY_EXTRA_PACKAGES", "EDGEFERRY_BROKER_GROUP", "EDGEFERRY_HA_PYTHON",
    "EDGEFERRY_HA_VERSION", "EDGEFERRY_HA_VENV", "EDGEFERRY_GRAFANA_SCHEMA_DIR", "EDGEFERRY_UPDATE_SCREENSHOTS",
    "EDGEFERRY_CRASH_AT", "EDGEFERRY_PROGRESS_EVERY_S", "EDGEFERRY_PYTHON",
})


class _ExplicitNull:
    """A flag set to null on purpose (--run.duration_s=null): unlike an absent flag (None), it overrides the file."""

    _instance: _ExplicitNull | None = None

    def __new__(cls) -> _ExplicitNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "null"


EXPLICIT_NULL: Any = _ExplicitNull()


def _set_path(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
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


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where, then what (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file, with one-line errors that name the file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
            "is it the right file?"
        ) from exc
    if "\x00" in text:
        raise ConfigError(f"config file {path} is binary (it holds NUL bytes), not YAML: is it the right file?")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_reason(exc)}") from exc
    except RecursionError as exc:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping (section: {{key: value}}) at the top level, "
            f"not a {type(data).__name__}"
        )
    return data


def _env_entries(environ: Mapping[str, str], prefix: str) -> list[tuple[Key, Any, str]]:
    """(path, typed value, variable name) of every EDGEFERRY_SECTION__KEY variable."""
    entries = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(prefix) or name == f"{prefix}CONFIG":
            continue
        path = tuple(p.lower() for p in name[len(prefix) :].split("__") if p)
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        entries.append((path, value, name))
    return entries


def env_overrides(environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """EDGEFERRY_MQTT__PORT=1884 becomes {'mqtt': {'port': 1884}} (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for path, value, _ in _env_entries(environ, prefix):
        _set_path(tree, path, value)
    return tree


def dotted_overrides(flags: Mapping[str, Any]) -> dict[str, Any]:
    """{'mqtt.port': 1884} becomes {'mqtt': {'port': 1884}}; None values mean 'flag not given', EXPLICIT_NULL
    means null."""
    tree: dict[str, Any] = {}
    for key, value in flags.items():
        if value is not None:
            _set_path(tree, key.split("."), None if value is EXPLICIT_NULL else value)
    return tree


def _scalar(raw: str) -> Any:
    """A flag value as YAML reads it (1884 -> int, true -> bool, [a, b] -> list, null -> EXPLICIT_NULL);
    unparseable text stays text."""
    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return EXPLICIT_NULL if value is None else value


def parse_set_pairs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """`--set a.b=value` pairs as dotted overrides (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value, got {pair!r}")
        out[key.strip()] = _scalar(raw)
    return out


def parse_dotted_args(args: Sequence[str]) -> dict[str, Any]:
    """Extra `--section.key=value` / `--section.key value` arguments: every config option as a flag."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"unexpected argument {arg!r}; config options are given as --section.key=value")
        key, sep, raw = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a value")
            raw = args[i + 1]
            i += 1
        out[key.replace("-", "_")] = _scalar(raw)
        i += 1
    return out


def _leaves(tree: Mapping[str, Any], prefix: Key = ()) -> list[Key]:
    out: list[Key] = []
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping) and v:
            out += _leaves(v, path)
        else:
            out.append(path)
    return out


def _data_path(data: Any, error: Mapping[str, Any]) -> Key:
    """The error location as the user wrote it: union tags pydantic inserts (source.image_dir.path) are dropped,
    and a bad tag is reported at its own key (source.type)."""
    path: list[str] = []
    node = data
    for part in error["loc"]:
        has = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if has:
            node = node[part]
        elif isinstance(node, Mapping) and part in {v for v in node.values() if isinstance(v, str)}:
            continue  # the discriminator's value of a tagged union (source.type: image_dir), not a key
        else:
            node = None
        path.append(str(part))
    tag = (error.get("ctx") or {}).get("discriminator")
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"} and isinstance(tag, str):
        path.append(tag.strip("'"))
    return tuple(path)


def _model_keys(annotation: Any, prefix: Key = (), seen: frozenset[type] = frozenset()) -> set[Key]:
    """Every key path of a config annotation: nested models, optional sections, unions and lists of models."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _model_keys(get_args(annotation)[0], prefix, seen)
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return set().union(*(_model_keys(arg, prefix, seen) for arg in get_args(annotation)))
    out: set[Key] = set()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        for name, field in annotation.model_fields.items():
            out.add((*prefix, name))
            out |= _model_keys(field.annotation, (*prefix, name), seen | {annotation})
    return out


_warned: set[str] = set()


def _warn_once(line: str) -> None:
    """One stderr line per unknown variable per process (the agent reloads its config on set-config)."""
    if line not in _warned:
        _warned.add(line)
        print(line, file=sys.stderr, flush=True)


def unknown_env_warnings(cls: type[BaseModel], environ: Mapping[str, str], roots: set[str]) -> list[str]:
    """One line per EDGEFERRY_ variable outside every section of `cls` that reads as a misspelt option (a
    SECTION__KEY form, or close to an option's name): without it, the typo would be silently ignored."""
    suffixes = sorted("__".join(k).upper() for k in _model_keys(cls))
    lines = []
    for path, _, name in _env_entries(environ, ENV_PREFIX):
        # A variable under a known section reaches validation, which names a wrong key there in its error.
        if name in NON_CONFIG_VARIABLES or path[0] in roots:
            continue
        close = difflib.get_close_matches(name[len(ENV_PREFIX):], suffixes, n=1, cutoff=0.75)
        if not close and "__" not in name:
            continue  # EDGEFERRY_SOMETHING, near no option: a tool's own variable, not a misspelt option
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else " (--help-config lists the options)"
        lines.append(f"warning: environment variable {name} names no config option and is ignored{hint}")
    return lines


def _origin(path: Key, origins: Sequence[tuple[Key, str]]) -> str | None:
    """Where the value at `path` came from: the latest source that set it, or every source under a section."""
    covering = [label for key, label in origins if path[: len(key)] == key]
    if covering:
        return covering[-1]
    inside = list(dict.fromkeys(label for key, label in origins if key[: len(path)] == path))
    return ", ".join(inside) if inside else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def load_config(
    cls: type[T],
    path: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    known_env_roots: set[str] | None = None,
    *,
    flag_labels: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = _warn_once,
) -> T:
    """Defaults < file < environment < flags, validated once into cls.

    A flag of None is 'not given'; EXPLICIT_NULL (what `--key=null` parses to) sets null over the file.
    `flag_labels` says how the user spelled each dotted flag key (`--store` for publish.store.uri); by default a
    key `mqtt.port` is reported as the flag `--mqtt.port`. An EDGEFERRY_ variable that names no option is
    reported through `warn` (once per process by default), unless the config takes no variables at all.
    """
    environ = os.environ if environ is None else environ
    file_data: dict[str, Any] = read_yaml(path) if path else {}
    roots = known_env_roots if known_env_roots is not None else set(cls.model_fields)
    if roots:
        for line in unknown_env_warnings(cls, environ, roots):
            warn(line)
    env_entries = [e for e in _env_entries(environ, ENV_PREFIX) if e[0][0] in roots]
    env: dict[str, Any] = {}
    for key, value, _ in env_entries:
        _set_path(env, key, value)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    data = _merge(_merge(file_data, env), dotted_overrides(given))
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        labels = flag_labels or {}
        origins: list[tuple[Key, str]] = [(leaf, f"config file {path}") for leaf in _leaves(file_data)]
        origins += [(key, f"environment {name}") for key, _, name in env_entries]
        origins += [(tuple(k.split(".")), f"flag {labels.get(k, '--' + k)}") for k in given]
        first = exc.errors()[0]
        where = _data_path(data, first)
        # A missing tag was set by nobody: report who set the section's other options.
        src = _origin(where[:-1] if first["type"] == "union_tag_not_found" else where, origins)
        message = first["msg"]
        if first["type"] == "union_tag_not_found":  # e.g. --source.path=x while the file sets no source.type
            message = f"the kind must be given too when {where[0]} options are set"
        shown = first["type"] not in {"missing", "union_tag_invalid", "union_tag_not_found"}
        got = f" (got {_shown(first['input'])})" if shown else ""
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(
            f"config value {'.'.join(where) or '<root>'}{f' from {src}' if src else ''}: {message}{got}{more}"
        ) from exc


def config_digest(cfg: BaseModel) -> str:
    """Short digest of a resolved config, so telemetry shows which config a device runs."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
