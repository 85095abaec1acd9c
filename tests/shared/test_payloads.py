"""The MQTT contract: topics, envelopes, commands, and the one metric table."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import CommandError, InvalidNameError
from shared.metrics import BY_NAME, METRICS, STAGES
from shared.payloads import DeployCommand, Envelope, SetConfigCommand, TelemetryPayload, parse_command, request_id_of
from shared.topics import DeviceTopics, fleet_filter


def test_topics() -> None:
    t = DeviceTopics("lab", "cam-01")
    assert t.status == "edgeferry/lab/cam-01/status"
    assert t.reply("deploy") == "edgeferry/lab/cam-01/cmd/deploy/reply"
    assert t.command_name("edgeferry/lab/cam-01/cmd/ping") == "ping"
    assert t.command_name("edgeferry/lab/cam-01/cmd/ping/reply") is None
    assert t.command_name("edgeferry/lab/other/cmd/ping") is None
    assert fleet_filter("lab", "telemetry") == "edgeferry/lab/+/telemetry"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "sp ace"])
def test_device_ids_that_break_topics_or_acls_are_refused(bad: str) -> None:
    with pytest.raises(InvalidNameError):
        DeviceTopics("lab", bad)


def test_commands_parse() -> None:
    cmd = parse_command("deploy", b'{"id": "r1", "version": 4}')
    assert isinstance(cmd, DeployCommand) and cmd.version == 4
    cmd2 = parse_command("set-config", b'{"id": "r2", "values": {"events.mode": "every"}}')
    assert isinstance(cmd2, SetConfigCommand)


@pytest.mark.parametrize(
    ("name", "payload", "match"),
    [
        ("reboot", b'{"id": "1"}', "unknown command"),
        ("deploy", b"{", "not JSON"),
        ("deploy", b"[1]", "JSON object"),
        ("deploy", b'{"version": 1}', "id"),
        ("deploy", b'{"id": "1", "version": "x"}', "version"),
        ("deploy", b'{"id": "1", "extra": 1}', "extra"),
        ("ping", b'{"id": "1", "name": "deploy"}', "arrived on"),
        ("ping", b" " * 20000, "limit"),
        ("ping", b"[" * 5000 + b"]" * 5000, "nested"),
    ],
)
def test_bad_commands_get_one_line_reasons(name: str, payload: bytes, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        parse_command(name, payload)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["deploy", "rollback", "set-config", "ping", "x"]), payload=st.binary(max_size=300))
def test_no_payload_crashes_the_parser(name: str, payload: bytes) -> None:
    try:
        parse_command(name, payload)
    except CommandError as exc:
        assert str(exc)
    request_id_of(payload)


def test_telemetry_only_takes_declared_metrics() -> None:
    env = Envelope(device_id="d", boot_id="b", seq=1, ts=1)
    t = TelemetryPayload.build(env, {"fps": 30.0, "e2e_ms_p99": 4.0})
    body = json.loads(t.model_dump_json())
    assert body["fps"] == 30.0 and body["seq"] == 1 and body["schema_version"] == 1
    with pytest.raises(ValueError, match="undeclared"):
        TelemetryPayload.build(env, {"made_up": 1.0})


def test_metric_table_is_unique_and_covers_every_stage() -> None:
    assert len(BY_NAME) == len(METRICS)
    for stage in STAGES:
        for p in (50, 95, 99):
            assert f"{stage}_ms_p{p}" in BY_NAME
    assert BY_NAME["frames"].prometheus_name == "edgeferry_frames_total"
    assert BY_NAME["fps"].prometheus_name == "edgeferry_fps"


@pytest.mark.parametrize(("raw_id", "why"), [
    ('"\\ud800"', "not valid UTF-8"),  # a lone surrogate, as issue 14's 15-byte command
    ('"a\\u0000b"', "control characters"),
    ('"\\u001b[2J"', "control characters"),
    ('"r\\u0085"', "control characters"),
    ("7", "string"),
    ('["r-1"]', "string"),
    ('""', "1-64"),
    ('"' + "x" * 65 + '"', "1-64"),
])
def test_command_request_ids_are_text_a_reply_can_carry(raw_id: str, why: str) -> None:
    """The same rule as signed commands (shared.command_signing.check_request_id): refused, and no id to echo."""
    payload = ('{"id": ' + raw_id + "}").encode()
    with pytest.raises(CommandError, match=why):
        parse_command("ping", payload)
    assert request_id_of(payload) is None


def test_a_good_request_id_is_kept_and_echoed() -> None:
    payload = '{"id": "r-1 é"}'.encode()
    assert parse_command("ping", payload).id == "r-1 é" and request_id_of(payload) == "r-1 é"
