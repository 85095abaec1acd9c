"""One vocabulary across every command of `edgeferry`: the same concept has the same option name everywhere, and
the spellings used before it still work, with a warning, for one release."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from edgeferry.cli import app
from edgeferry.legacy_flags import LEGACY, command_path, translate
from tests.test_cli import one_line_error, run

ROOT = typer.main.get_command(app)
# A key means one thing per name: which key it is is in the name.
KEY_OPTIONS = {"--signing-key", "--trusted-key", "--command-key", "--ssh-key", "--tls-key"}
# Spellings whose meaning depended on the command.
AMBIGUOUS = {"--key", "--host", "--port", "--json", "--mqtt-host", "--mqtt-port"}


def commands(node: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group of the tree, the root included, with its path (fleet, rollout, start)."""
    yield path, node
    for name, sub in sorted(getattr(node, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def visible_options(node: Any) -> list[tuple[str, Any]]:
    """(spelling, param) of every option --help shows."""
    return [(opt, p) for p in node.params if p.param_type_name == "option" and not p.hidden
            for opt in (*p.opts, *p.secondary_opts)]


def hidden_options(node: Any) -> set[str]:
    return {opt for p in node.params if p.param_type_name == "option" and p.hidden for opt in p.opts}


def test_the_walk_reaches_every_side() -> None:
    paths = {" ".join(p) for p, _ in commands()}
    assert {"train", "agent", "cmd", "keygen", "verify", "publish-pointer", "bench", "sim", "fleet devices",
            "fleet rollout start", "hil run"} <= paths


@pytest.mark.parametrize(("path", "node"), list(commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_each_option_name_means_one_thing(path: tuple[str, ...], node: Any) -> None:
    where = " ".join(("edgeferry", *path))
    for opt, param in visible_options(node):
        assert opt not in AMBIGUOUS, f"{where} shows {opt}"
        if opt == "--version":
            assert path == (), f"{where}: --version is the program's; a model's version is --model-version"
        if "key" in opt.split("-"):
            assert opt in KEY_OPTIONS, f"{where} shows {opt}; say which key: {sorted(KEY_OPTIONS)}"
        help_text = (param.help or "").lower()
        if "broker" in help_text and re.search(r"host|port", opt + " " + help_text):
            assert opt == "--broker", f"{where}: the broker is --broker HOST[:PORT], not {opt}"
        if opt.endswith(("-host", "-port")):
            assert "broker" not in help_text, f"{where}: {opt} is the broker's; use --broker"
        if opt == "--output":
            assert "json" in help_text, f"{where}: --output offers json"


# Fleet commands that connect to the broker (rollout commands only write the database; the leader publishes).
FLEET_BROKER_COMMANDS = {("fleet", "serve"), ("fleet", "deploy"), ("fleet", "rollback"), ("fleet", "devices", "remove")}


def test_the_broker_is_broker_host_port_wherever_a_command_takes_one() -> None:
    takes_broker = {path for path, node in commands() if any(o == "--broker" for o, _ in visible_options(node))}
    assert {("agent",), ("cmd",), ("sim",), *FLEET_BROKER_COMMANDS} <= takes_broker
    for path in FLEET_BROKER_COMMANDS:
        param = next(p for o, p in visible_options(dict(commands())[path]) if o == "--broker")
        assert "HOST[:PORT]" in (param.help or ""), f"edgeferry {' '.join(path)} --help: say HOST[:PORT]"


@pytest.mark.parametrize(("path", "old", "new"), [
    (("cmd",), "--key", "--command-key"), (("cmd",), "--json", "--args-json"), (("cmd",), "--host", "--broker"),
    (("cmd",), "--port", "--broker"), (("agent",), "--mqtt-host", "--broker"), (("agent",), "--mqtt-port", "--broker"),
    (("verify",), "--key", "--trusted-key"), (("verify",), "--version", "--model-version"),
    (("publish-pointer",), "--key", "--signing-key"), (("bench",), "--key", "--signing-key"),
    (("bench",), "--version", "--model-version"),
])
def test_old_spellings_of_the_cli_commands_are_hidden_options(path: tuple[str, ...], old: str, new: str) -> None:
    node = dict(commands())[path]
    assert old in hidden_options(node)
    assert new in {o for o, _ in visible_options(node)}


@pytest.mark.parametrize("path", sorted(LEGACY))
def test_old_spellings_elsewhere_translate_to_options_the_command_has(path: tuple[str, ...]) -> None:
    node = dict(commands())[path]
    shown = {o for o, _ in visible_options(node)}
    for old, new in LEGACY[path].items():
        argv, warnings = translate(ROOT, [*path, old, "7"])
        assert argv[len(path)] == new[0] and new[0] in shown, (path, old)
        assert warnings == [f"warning: {old} is deprecated and goes in the next release; use {' '.join(new)}"]


def test_translation_follows_the_command_not_the_word() -> None:
    assert translate(ROOT, ["--version"]) == (["--version"], [])  # the program's own
    assert translate(ROOT, ["fleet", "--help"]) == (["fleet", "--help"], [])
    argv, _ = translate(ROOT, ["fleet", "devices", "--config", "fleet.yaml", "--json", "--version=3"])
    assert argv == ["fleet", "devices", "--config", "fleet.yaml", "--output", "json", "--model-version=3"]
    assert command_path(ROOT, ["fleet", "groups", "--config", "x", "assign", "cam-1", "north"])[0] == (
        "fleet", "groups", "assign")
    argv, warnings = translate(ROOT, ["hil", "run", "--key", "id", "--", "--key"])
    assert argv == ["hil", "run", "--ssh-key", "id", "--", "--key"] and len(warnings) == 1


def test_old_spellings_still_run_with_one_warning_each(tmp_path: Path) -> None:
    key = tmp_path / "ops.key"
    assert run("keygen", str(key)).returncode == 0
    # cmd: every old spelling at once; the broker they name (port 1) is where it tries to connect.
    proc = run("cmd", "cam-1", "ping", "--key", str(key), "--host", "127.0.0.1", "--port", "1", "--json", "{}",
               "--timeout", "2")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("error: cannot connect to the broker at 127.0.0.1:1"), lines
    assert sorted(line.split()[1] for line in lines[:-1]) == ["--host/--port", "--json", "--key"]
    proc = run("agent", "--mqtt-port", "0")
    assert "config value mqtt.port from flag --mqtt-port" in proc.stderr and "use --broker HOST:PORT" in proc.stderr
    proc = run("verify", "--store", str(tmp_path), "--key", str(key.with_suffix(".pub")), "--version", "2")
    assert "use --trusted-key" in proc.stderr and "use --model-version" in proc.stderr
    assert "manifest.json not found in store" in proc.stderr.strip().splitlines()[-1]
    db = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    proc = run("fleet", "devices", "--set", f"database.url={db}", "--json", "--version", "7")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
    assert "use --output json" in proc.stderr and "use --model-version" in proc.stderr


def test_new_spellings_run_without_warnings(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    proc = run("fleet", "devices", "--set", f"database.url={db}", "--output", "json", "--model-version", "7")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[]", "")
    assert "--broker must be HOST[:PORT]" in one_line_error(run("cmd", "cam-1", "ping", "--command-key", "k",
                                                                "--broker", "localhost:http"))


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """Every `edgeferry ...` command the README shows: in command blocks and in inline code."""
    text = README.read_text()
    found = re.findall(r"`(?:\.venv/bin/)?(edgeferry [^`]+)`", text)
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found += [m.group(1) for m in re.finditer(r"(?:^|;\s+|\s)(?:\S*/)?\.venv/bin/(edgeferry [^;#]+)", line)]
    return found


def test_readme_command_blocks_run_the_venv_s_edgeferry() -> None:
    text = README.read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            assert not re.search(r"(^|;\s+)edgeferry ", line), f"not on PATH after make train-cloud: {line}"
    assert "source .venv/bin/activate" in text


def test_readme_uses_only_options_the_commands_show() -> None:
    nodes = dict(commands())
    checked = 0
    for command in readme_commands():
        argv = command.split()[1:]
        path, _ = command_path(ROOT, argv)
        shown = {o for p in (path[:i] for i in range(len(path) + 1)) for o, _ in visible_options(nodes[p])}
        for token in argv:
            opt = token.strip("[]|'\"").split("=", 1)[0]
            if not opt.startswith("--") or opt in {"--help", "--"} or (path[:1] in {("agent",), ("train",)}
                                                                         and "." in opt):
                continue
            assert opt in shown, f"README: `{command}` uses {opt}, which edgeferry {' '.join(path)} does not show"
            checked += 1
    assert checked > 30


def test_cmd_without_its_command_key_is_one_line_naming_the_new_option() -> None:
    assert "--command-key is required" in one_line_error(run("cmd", "cam-1", "ping"))
