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
        """The environment variable that sets it (for an entry of a list, the variable of the whole list)."""
        return ENV_PREFIX + self.key.split("[]")[0].upper().replace(".", "__")


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config sections an annotation holds: one model (optional or not), or the members of a tagged union."""
    if get_origin(annotation) is typing.Annotated:
        return _models(get_args(annotation)[0])
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    members = tuple(m for m in members if m is not type(None))
    found = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return found if found and len(found) == len(members) else []


def _item_models(annotation: Any) -> list[type[BaseModel]]:
    """The models of a list of sections (list[User], list[User] | None): each entry's options are listed too."""
    if get_origin(annotation) is typing.Annotated:
        return _item_models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _item_models(a)]
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return [m for a in get_args(annotation) if a is not Ellipsis for m in _models(a)]
    return []


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
            items = _item_models(field.annotation)
            if len(items) == 1:
                out += options(items[0], f"{key}[].")
            elif items:
                out += _union_options(f"{key}[]", items, field)
    return out


def _kind(tag_field: FieldInfo) -> str:
    """A union member's tag value: its default, or the one value its Literal allows."""
    if tag_field.default is not PydanticUndefined:
        return str(tag_field.default)
    return ", ".join(str(a) for a in get_args(tag_field.annotation))


def _tag_of(members: list[type[BaseModel]]) -> str:
    """The field that tells union members apart: the first one every member declares as a Literal."""
    for name in members[0].model_fields:
        if all(name in m.model_fields and get_origin(m.model_fields[name].annotation) is Literal for m in members):
            return name
    return "type"


def _union_options(key: str, members: list[type[BaseModel]], field: FieldInfo) -> list[ConfigOption]:
    """A tagged union (source, backend): the tag first, then each option once, with the kinds that have it."""
    tag = field.discriminator if isinstance(field.discriminator, str) else _tag_of(members)
    kinds = [_kind(m.model_fields[tag]) for m in members]
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
