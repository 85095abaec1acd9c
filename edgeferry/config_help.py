"""Every option of a config tree, read from its pydantic schema, so `--help-config` and the docs cannot drift."""

from __future__ import annotations

import enum
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.config_loader import ENV_PREFIX


@dataclass(frozen=True)
class ConfigOption:
    """One settable leaf: `key` is what a flag (--key=value) or an EDGEFERRY_ variable names."""

    key: str
    type: str
    default: str
    description: str
    only_for: tuple[str, ...] = ()  # tag values of the union this option belongs to, e.g. ("video_file",)
    tag_key: str = ""  # the union's discriminator key, e.g. "source.type"

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return ENV_PREFIX + self.key.upper().replace(".", "__")


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config sections an annotation holds: one model, or the members of a tagged union."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    if get_origin(annotation) is typing.Annotated:
        return _models(get_args(annotation)[0])
    found = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return found if len(found) == len(members) else []


def type_name(annotation: Any) -> str:
    """A short, readable type: int, float | none, path, one of: a, b."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, set, frozenset, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if annotation is type(None):
        return "none"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, enum.Enum):
        value = value.value
    return json.dumps(value, default=str)


def options(model: type[BaseModel], prefix: str = "") -> list[ConfigOption]:
    """Every leaf option of a config model, sections expanded, each union member's options marked as such."""
    out: list[ConfigOption] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sections = _models(field.annotation)
        if len(sections) == 1:
            out += options(sections[0], f"{key}.")
        elif sections:
            out += _union_options(key, sections, field)
        else:
            out.append(ConfigOption(key, type_name(field.annotation), _default(field), field.description or ""))
    return out


def _union_options(key: str, members: list[type[BaseModel]], field: FieldInfo) -> list[ConfigOption]:
    """A tagged union (source, backend): the tag first, then each option once, with the kinds that have it."""
    tag = field.discriminator if isinstance(field.discriminator, str) else "type"
    kinds = [str(m.model_fields[tag].default) for m in members]
    default = field.get_default(call_default_factory=True)
    default_kind = json.dumps(str(getattr(default, tag))) if isinstance(default, BaseModel) else "required"
    out = [ConfigOption(f"{key}.{tag}", "one of: " + ", ".join(kinds), default_kind, f"Kind of {key}.")]
    merged: dict[str, list[tuple[str, ConfigOption]]] = {}
    for member, kind in zip(members, kinds, strict=True):
        for opt in options(member, f"{key}."):
            if opt.key != f"{key}.{tag}":
                merged.setdefault(opt.key, []).append((kind, opt))
    for opt_key, having in merged.items():
        first = having[0][1]
        only = () if len(having) == len(kinds) else tuple(kind for kind, _ in having)
        descriptions = {o.description for _, o in having}
        description = first.description if len(descriptions) == 1 else "; ".join(
            f"{kind}: {o.description.rstrip('.')}" for kind, o in having
        ) + "."
        defaults = {o.default for _, o in having}
        default_text = first.default if len(defaults) == 1 else ", ".join(f"{kind}: {o.default}" for kind, o in having)
        out.append(ConfigOption(opt_key, first.type, default_text, description, only, f"{key}.{tag}"))
    return out


def render(title: str, opts: list[ConfigOption]) -> str:
    """Plain text for a terminal: one option per entry, with its type, default, variable and description."""
    lines = [
        title,
        "Set each option in the YAML file (section: {key: value}), as --section.key=value, or as the variable shown;",
        "flags beat variables, variables beat the file.",
        "",
    ]
    for opt in opts:
        when = f"; only when {opt.tag_key} is {' or '.join(opt.only_for)}" if opt.only_for else ""
        lines.append(f"{opt.key}  ({opt.type}; default {opt.default}{when})")
        lines.append(f"    {opt.description}  [{opt.env}]")
    return "\n".join(lines) + "\n"
