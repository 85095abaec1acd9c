"""A flag or variable set to null overrides the file, and a misspelt EDGEFERRY_ variable is reported, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import TrainConfig
from edge.config import AgentConfig
from fleet.config import FleetConfig
from shared import config_loader
from shared.config_loader import load_config, parse_dotted_args, parse_set_pairs

DEMO = Path(__file__).resolve().parents[2] / "configs" / "edge-demo.yaml"


def test_the_demo_config_stops_after_20_s_unless_told_otherwise() -> None:
    assert load_config(AgentConfig, DEMO, {}, {}).run.duration_s == 20


@pytest.mark.parametrize(
    ("flags", "environ"),
    [
        (parse_dotted_args(["--run.duration_s=null"]), {}),
        (parse_dotted_args(["--run.duration_s", "~"]), {}),
        (parse_set_pairs(["run.duration_s=null"]), {}),
        ({}, {"EDGEFERRY_RUN__DURATION_S": "null"}),
        # A flag's null beats a variable's value, as any flag does.
        (parse_dotted_args(["--run.duration_s=null"]), {"EDGEFERRY_RUN__DURATION_S": "5"}),
    ],
)
def test_null_overrides_the_file(flags: dict[str, object], environ: dict[str, str]) -> None:
    assert load_config(AgentConfig, DEMO, flags, environ).run.duration_s is None


def test_a_flag_left_out_still_leaves_the_file_alone() -> None:
    # Typer hands an option that was not given as None: that must not clear the file's value.
    assert load_config(AgentConfig, DEMO, {"run.duration_s": None}, {}).run.duration_s == 20


def test_a_null_where_null_is_not_allowed_is_one_line_naming_the_flag() -> None:
    with pytest.raises(config_loader.ConfigError, match=r"^config value mqtt\.port from flag --mqtt\.port:"):
        load_config(AgentConfig, None, parse_dotted_args(["--mqtt.port=null"]), {})


def test_a_misspelt_variable_is_warned_about_once_with_the_close_match() -> None:
    lines: list[str] = []
    env = {"EDGEFERRY_MQTT_PORT": "1884", "EDGEFERRY_MQTT__HOST": "broker", "EDGEFERRY_CONFIG": "edge.yaml"}
    cfg = load_config(AgentConfig, None, {}, env, warn=lines.append)
    assert cfg.mqtt.host == "broker"
    assert lines == ["warning: environment variable EDGEFERRY_MQTT_PORT names no config option and is ignored; "
                     "did you mean EDGEFERRY_MQTT__PORT?"]


def test_nested_sections_are_known_and_suggested() -> None:
    lines: list[str] = []
    env = {"EDGEFERRY_MQTT__TLS__CA_FILE": "ca.pem", "EDGEFERRY_MQQT__TLS__CERT_FILE": "c.pem"}
    cfg = load_config(AgentConfig, None, {}, env, warn=lines.append)
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == Path("ca.pem")
    assert len(lines) == 1 and "EDGEFERRY_MQQT__TLS__CERT_FILE" in lines[0]
    assert lines[0].endswith("did you mean EDGEFERRY_MQTT__TLS__CERT_FILE?")


def test_a_section_far_from_any_option_points_at_help_config() -> None:
    lines: list[str] = []
    # A tool's own variable (one word, near no option) is not a config key and not a misspelling of one.
    load_config(TrainConfig, None, {}, {"EDGEFERRY_ZZZ__LR": "1", "EDGEFERRY_SOME_TOOL": "x"}, warn=lines.append)
    assert lines == ["warning: environment variable EDGEFERRY_ZZZ__LR names no config option and is ignored "
                     "(--help-config lists the options)"]


def test_the_default_warning_is_printed_once_per_process(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_loader, "_warned", set())
    env = {"EDGEFERRY_SNYC__MODEL": "digits"}
    for _ in range(3):  # the agent reloads its config on every set-config
        load_config(AgentConfig, None, {}, env)
    err = capsys.readouterr().err
    assert err.count("EDGEFERRY_SNYC__MODEL") == 1 and "did you mean EDGEFERRY_SYNC__MODEL?" in err


def test_configs_that_take_no_variables_stay_quiet() -> None:
    lines: list[str] = []
    load_config(FleetConfig, None, {}, {"EDGEFERRY_DATABASE__URL": "sqlite://"}, known_env_roots=set(),
                warn=lines.append)
    assert lines == []
