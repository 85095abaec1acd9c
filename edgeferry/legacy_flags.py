"""Spellings the CLI used before its one vocabulary (--broker, --signing-key, --model-version, --output ...), still
accepted for one release with a warning line, for the commands that do not declare them as hidden options.

The command path is found by walking the click tree along argv, so `--version` stays the program's own at the root
and becomes `--model-version` only where a model's version is meant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# command path -> old spelling -> the new argv tokens (a value after the old spelling is kept after the first one).
LEGACY: Mapping[tuple[str, ...], Mapping[str, tuple[str, ...]]] = {
    ("fleet", "devices"): {"--version": ("--model-version",), "--json": ("--output", "json")},
    ("fleet", "groups"): {"--json": ("--output", "json")},
    ("fleet", "deploy"): {"--version": ("--model-version",)},
    ("fleet", "rollout", "start"): {"--version": ("--model-version",), "--json": ("--output", "json")},
    ("fleet", "rollout", "status"): {"--json": ("--output", "json")},
    ("fleet", "rollout", "history"): {"--json": ("--output", "json")},
    ("sim",): {"--version": ("--model-version",)},
    ("hil", "run"): {"--key": ("--ssh-key",)},
}


def _takes_value(command: Any, token: str) -> bool:
    """Whether an option of this command consumes the next token (`--config x`), so it is not a subcommand."""
    name = token.split("=", 1)[0]
    for param in getattr(command, "params", []):
        if name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            return "=" not in token and not getattr(param, "is_flag", False) and not getattr(param, "count", False)
    return False


def command_path(root: Any, argv: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """(subcommand names, index in argv after the last one) for a click group tree."""
    path: list[str] = []
    node, i, end = root, 0, len(argv)
    while i < end:
        token = argv[i]
        if token == "--":
            break
        if token.startswith("-"):
            i += 2 if _takes_value(node, token) else 1
            continue
        commands = getattr(node, "commands", None)
        if not commands or token not in commands:
            break
        node = commands[token]
        path.append(token)
        i += 1
    return tuple(path), i


def translate(root: Any, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv with old spellings replaced by new ones, and one warning line per old spelling used."""
    path, _ = command_path(root, argv)
    table: dict[str, tuple[str, ...]] = {}
    for depth in range(len(path) + 1):  # a group's options (fleet groups --json) sit before its subcommand
        table.update(LEGACY.get(path[:depth], {}))
    if not table:
        return list(argv), []
    out: list[str] = []
    warnings: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            out += argv[i:]
            break
        name, eq, value = token.partition("=")
        new = table.get(name)
        if new is None:
            out.append(token)
            continue
        line = f"warning: {name} is deprecated and goes in the next release; use {' '.join(new)}"
        if line not in warnings:
            warnings.append(line)
        out += [f"{new[0]}={value}"] if eq else list(new)
    return out, warnings
