"""The `edgeferry` command as a new user meets it: version, -h everywhere, completion, the same config flags for
train and agent, one line and exit 1 for every user error, and the config reference generated from the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from cloud.config import TrainConfig
from edge.config import AgentConfig
from edgeferry.cli import app
from edgeferry.config_help import options
from shared.config_loader import load_config

ROOT = Path(__file__).resolve().parents[1]
EDGEFERRY = Path(sys.executable).with_name("edgeferry")
# Makes torch and Lightning unimportable, as on a device that installed only the edge extra.
NO_TORCH = """import sys
for name in ("torch", "pytorch_lightning", "lightning", "torchmetrics"):
    sys.modules[name] = None
"""


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")}
    return subprocess.run(
        [str(EDGEFERRY), *args], capture_output=True, text=True, timeout=120, env={**clean, **(env or {})}, cwd=cwd
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The user error a command printed: exit 1, a single `error:` line on stderr, no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_version_comes_from_the_installed_package() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"edgeferry {version('edgeferry')}"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_answers_h_and_help(flag: str) -> None:
    commands = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    assert {"train", "agent", "keygen", "verify", "dashboards"} <= set(commands)
    for command in ["", *commands]:
        proc = run(*([command] if command else []), flag)
        assert proc.returncode == 0 and "Usage: edgeferry" in proc.stdout, (command, proc.stderr)


def test_shell_completion_script_and_completions() -> None:
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "_edgeferry_completion" in script.stdout and "complete " in script.stdout
    env = {"_EDGEFERRY_COMPLETE": "complete_bash", "COMP_WORDS": "edgeferry ag", "COMP_CWORD": "1"}
    assert run(env=env).stdout.split() == ["agent"]
    env = {"_EDGEFERRY_COMPLETE": "complete_bash", "COMP_WORDS": "edgeferry train --ep", "COMP_CWORD": "2"}
    assert "--epochs" in run(env=env).stdout.split()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["train", "--trainer.lr=fast"], {}, "config value trainer.lr from flag --trainer.lr: Input should be a valid"),
        (["train", "--trainer.max_epochs", "0"], {}, "trainer.max_epochs from flag --trainer.max_epochs:"),
        (["train", "--epochs", "0"], {}, "config value trainer.max_epochs from flag --epochs:"),
        (["train", "--set", "trainer.lr=x"], {}, "trainer.lr from flag --set trainer.lr:"),
        (["train"], {"EDGEFERRY_TRAINER__MAX_EPOCHS": "0"}, "from environment EDGEFERRY_TRAINER__MAX_EPOCHS:"),
        (["train", "--trainer.bogus=1"], {}, "trainer.bogus from flag --trainer.bogus: Extra inputs are not permitted"),
        (["train", "stray"], {}, "unexpected argument 'stray'; config options are given as --section.key=value"),
        (["train", "--set", "trainer.lr"], {}, "--set expects section.key=value"),
        (["agent", "--mqtt.port=99999"], {}, "config value mqtt.port from flag --mqtt.port:"),
        (["agent", "--broker", "localhost:0"], {}, "--broker must be HOST[:PORT] with a port from 1 to 65535"),
        (["agent", "--broker", "localhost:99999"], {}, "--broker must be HOST[:PORT]"),
        (["agent", "--source.type=webcam"], {}, "config value source.type from flag --source.type: Input tag 'webcam'"),
        (["agent"], {"EDGEFERRY_MQTT__KEEPALIVE_S": "soon"}, "mqtt.keepalive_s from environment EDGEFERRY_MQTT__"),
    ],
)
def test_a_bad_value_is_one_line_naming_where_it_came_from(args: list[str], env: dict[str, str], expected: str) -> None:
    assert expected in one_line_error(run(*args, env=env))


@pytest.mark.parametrize("command", ["train", "agent"])
def test_unusable_config_files_are_one_line(command: str, tmp_path: Path) -> None:
    binary = tmp_path / "model.onnx"
    binary.write_bytes(bytes(range(256)) * 8)
    assert f"config file {binary} is not UTF-8 text" in one_line_error(run(command, "--config", str(binary)))
    listing = tmp_path / "list.yaml"
    listing.write_text("- mqtt\n- port\n")
    assert "must hold a mapping" in one_line_error(run(command, "--config", str(listing)))
    assert "not found" in one_line_error(run(command, "--config", str(tmp_path / "missing.yaml")))
    assert "Is a directory" in one_line_error(run(command, "--config", str(tmp_path)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {lr: 1\n" if command == "train" else "mqtt: {port: 1\n")
    assert "not valid YAML: line 2" in one_line_error(run(command, "--config", str(bad)))


def test_train_without_the_cloud_extra_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    proc = run("train", "--epochs", "1", env={"PYTHONPATH": str(tmp_path)})
    assert one_line_error(proc) == (
        "error: 'edgeferry train' needs the cloud extra (torch is missing): pip install -e '.[cloud]'"
    )
    # Configuration help does not need the extra.
    assert run("train", "--help-config", env={"PYTHONPATH": str(tmp_path)}).returncode == 0


def test_user_errors_of_other_commands_are_one_line(tmp_path: Path) -> None:
    key = tmp_path / "ops.key"
    assert run("keygen", str(key)).returncode == 0
    assert "already exists" in one_line_error(run("keygen", str(key)))
    public = str(key.with_suffix(".pub"))
    assert "no published versions" in one_line_error(run("verify", "--store", str(tmp_path), "--trusted-key", public))
    missing_key = str(tmp_path / "nope.pub")
    assert "nope.pub" in one_line_error(run("verify", "--store", str(tmp_path), "--trusted-key", missing_key))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert str(blocker) in one_line_error(run("dashboards", "--out", str(blocker / "sub")))


@pytest.mark.parametrize(("command", "schema"), [("agent", AgentConfig), ("train", TrainConfig)])
def test_help_config_lists_every_option_of_the_schema(command: str, schema: type) -> None:
    proc = run(command, "--help-config")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split("  (")[0] for line in proc.stdout.splitlines() if "  (" in line and not line[0].isspace()]
    assert listed == [o.key for o in options(schema)]
    assert len(listed) > (50 if command == "agent" else 40)


def test_help_config_entries_are_real_and_say_what_they_are() -> None:
    opts = {o.key: o for o in options(AgentConfig)}
    port = opts["mqtt.port"]
    assert (port.type, port.default, port.env) == ("int", "1883", "EDGEFERRY_MQTT__PORT")
    assert port.description == AgentConfig.model_fields["mqtt"].annotation.model_fields["port"].description
    assert opts["source.path"].only_for == ("video_file", "image_dir", "sensor_csv")
    assert opts["source.type"].default == '"synthetic"'
    assert opts["sync.store.uri"].default == '".store"'
    # Every listed key is one the loader accepts, with the union's kind selected where the key needs one.
    for opt in opts.values():
        if opt.default in {"required", "null"} or "[]" in opt.key:  # a list's items are given whole (below)
            continue
        flags: dict[str, object] = {opt.key: json.loads(opt.default)}
        if opt.tag_key:  # a union's option: its kind must be given with it
            kind = opt.only_for[0] if opt.only_for else json.loads(opts[opt.tag_key].default)
            flags[opt.tag_key] = kind
            flags.update({o.key: "x" for o in opts.values()
                          if o.default == "required" and kind in o.only_for and o.tag_key == opt.tag_key})
        load_config(AgentConfig, None, flags, {})
    # A list of sections (streams[].*) is set whole, by its own key, as its help entry's variable says.
    assert opts["streams[].stale_ms"].env == "EDGEFERRY_STREAMS"
    cfg = load_config(AgentConfig, None, {}, {"EDGEFERRY_STREAMS": '[{"name": "gate", "source": {"type": "camera"}}]'})
    assert [(s.name, s.source.type) for s in cfg.streams] == [("gate", "camera")]


def test_help_config_lists_the_options_of_optional_sections_and_lists_of_sections() -> None:
    proc = run("agent", "--help-config")
    assert proc.returncode == 0, proc.stderr
    for key in ("mqtt.tls.ca_file", "mqtt.tls.cert_file", "mqtt.tls.key_file", "mqtt.tls.insecure"):
        assert f"\n{key}  (" in proc.stdout, key
    assert "[EDGEFERRY_MQTT__TLS__CA_FILE]" in proc.stdout
    from dashboards.web.config import WebConfig

    web = {o.key: o for o in options(WebConfig)}
    assert {"users[].name", "users[].role", "alerts[].kind", "alerts[].threshold"} <= set(web)
    assert web["alerts[].threshold"].only_for == ("metric",) and web["users[].name"].env == "EDGEFERRY_USERS"


def test_a_misspelt_variable_is_one_warning_line_naming_it() -> None:
    proc = run("agent", "--mqtt.port=99999", env={"EDGEFERRY_MQTT_PROT": "1884"})
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == ("warning: environment variable EDGEFERRY_MQTT_PROT names no config option and is ignored; "
                        "did you mean EDGEFERRY_MQTT__PORT?"), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("error: config value mqtt.port from flag --mqtt.port")


def test_package_key_defaults_are_the_key_the_trainer_writes(tmp_path: Path) -> None:
    import typer

    from cloud.config import PublishConfig
    from cloud.signing_key import DEV_KEY_NAME

    trainer_key = PublishConfig().dev_key_dir / DEV_KEY_NAME
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("publish-pointer", "bench"):
        default = next(p.default for p in commands[name].params if p.name == "signing_key")
        assert Path(default) == trainer_key, name
    # Without the key, the fix offered is the trainer, never a keygen that would replace the trusted public key.
    (tmp_path / ".keys").mkdir()
    (tmp_path / ".keys" / "edgeferry.pub").write_text("devices trust this file\n")
    for args in (["publish-pointer"], ["bench", "--target", "lab"]):
        line = one_line_error(run(*args, cwd=tmp_path))
        assert f"signing key {trainer_key} not found" in line and "make train-cloud" in line, line
        assert "keygen" not in line and "--force" not in line
    assert (tmp_path / ".keys" / "edgeferry.pub").read_text() == "devices trust this file\n"
