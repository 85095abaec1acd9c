"""Signed desired state: round trip, no expiry, tampering, unknown keys, wrong addressee, replayed seq, clearing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.desired_state import (
    DesiredState,
    check_desired_sequence,
    is_cleared,
    sign_desired,
    verify_desired,
)
from shared.errors import CommandError, CommandRefused
from shared.signing import key_id
from shared.topics import DeviceTopics

KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
WEEK_AGO_MS = 1_700_000_000_000


def state(**over: Any) -> DesiredState:
    kw: dict[str, Any] = {"fleet": "lab", "device_id": "cam-3", "model": "digits", "version": 4,
                          "issued_at_ms": WEEK_AGO_MS, "seq": 10}
    kw.update(over)
    return DesiredState(**kw)


def test_round_trip_keeps_every_field_and_never_expires() -> None:
    s = state(allow_downgrade=True, rollout_id="r-7")
    got = verify_desired(sign_desired(s, KEY), TRUSTED, "lab", "cam-3")
    assert got == s
    assert got.allow_downgrade and got.rollout_id == "r-7"


def test_topic_is_under_the_device() -> None:
    assert DeviceTopics("lab", "cam-3").desired == "edgeferry/lab/cam-3/desired"


def test_altered_body_is_refused_as_bad_signature() -> None:
    doc = json.loads(sign_desired(state(), KEY))
    doc["signed"] = doc["signed"].replace('"version":4', '"version":9')
    with pytest.raises(CommandRefused) as e:
        verify_desired(json.dumps(doc).encode(), TRUSTED, "lab", "cam-3")
    assert e.value.reason == "bad_signature"


def test_key_not_trusted_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(CommandRefused) as e:
        verify_desired(sign_desired(state(), other), TRUSTED, "lab", "cam-3")
    assert e.value.reason == "unknown_key"
    assert key_id(other.public_key()) in str(e.value)


def test_unsigned_plain_state_is_refused() -> None:
    with pytest.raises(CommandRefused) as e:
        verify_desired(state().model_dump_json().encode(), TRUSTED, "lab", "cam-3")
    assert e.value.reason == "unsigned"


def test_forged_signature_bytes_are_refused() -> None:
    doc = json.loads(sign_desired(state(), KEY))
    doc["sig"] = base64.b64encode(b"\0" * 64).decode()
    with pytest.raises(CommandRefused) as e:
        verify_desired(json.dumps(doc).encode(), TRUSTED, "lab", "cam-3")
    assert e.value.reason == "bad_signature"


@pytest.mark.parametrize(("fleet", "device"), [("lab", "cam-4"), ("yard", "cam-3")])
def test_state_for_another_device_or_fleet_is_refused(fleet: str, device: str) -> None:
    with pytest.raises(CommandRefused) as e:
        verify_desired(sign_desired(state(), KEY), TRUSTED, fleet, device)
    assert e.value.reason == "not_addressed"


def test_lower_or_equal_seq_is_refused_higher_accepted() -> None:
    check_desired_sequence(state(seq=11), 10)
    check_desired_sequence(state(seq=1), None)
    for seq in (10, 9):
        with pytest.raises(CommandRefused) as e:
            check_desired_sequence(state(seq=seq), 10)
        assert e.value.reason == "replayed"


@pytest.mark.parametrize("payload", [b"not json", b"[1]", b'{"signed": 3, "key_id": "x", "sig": "y"}'])
def test_malformed_messages_are_one_line_errors(payload: bytes) -> None:
    with pytest.raises(CommandError) as e:
        verify_desired(payload, TRUSTED, "lab", "cam-3")
    assert "\n" not in str(e.value)


def test_signed_but_invalid_body_is_malformed_not_accepted() -> None:
    text = json.dumps({"fleet": "lab", "device_id": "cam-3", "model": "digits", "version": 0,
                       "issued_at_ms": 1, "seq": 1}, sort_keys=True, separators=(",", ":"))
    doc = {"signed": text, "key_id": key_id(KEY.public_key()),
           "sig": base64.b64encode(KEY.sign(text.encode())).decode()}
    with pytest.raises(CommandError, match="malformed: version"):
        verify_desired(json.dumps(doc).encode(), TRUSTED, "lab", "cam-3")


def test_empty_message_clears_and_is_not_verified() -> None:
    assert is_cleared(b"")
    assert not is_cleared(sign_desired(state(), KEY))
    with pytest.raises(CommandError, match="clears"):
        verify_desired(b"", TRUSTED, "lab", "cam-3")


def test_bad_values_are_refused_when_building() -> None:
    with pytest.raises(ValueError, match="version"):
        state(version=0)
    with pytest.raises(ValueError, match="invalid"):
        state(device_id="cam/3")
    with pytest.raises(ValueError, match="extra"):
        DesiredState(**{**state().model_dump(), "pin": True})


def test_a_desired_state_for_another_model_is_refused_as_not_addressed() -> None:
    assert verify_desired(sign_desired(state(), KEY), TRUSTED, "lab", "cam-3", "digits") == state()
    with pytest.raises(CommandRefused, match="names model 'faces' v4, but this device follows model 'digits'") as info:
        verify_desired(sign_desired(state(model="faces"), KEY), TRUSTED, "lab", "cam-3", "digits")
    assert info.value.reason == "not_addressed"


def test_a_desired_state_names_a_version_or_a_channel_and_a_version_state_signs_as_before_channels() -> None:
    text = json.loads(json.loads(sign_desired(state(), KEY))["signed"])
    assert "channel" not in text and text["version"] == 4  # older agents (extra fields forbidden) still apply it
    follow = state(version=None, channel="canary")
    got = verify_desired(sign_desired(follow, KEY), TRUSTED, "lab", "cam-3")
    assert got == follow and got.version is None and got.target == "channel canary"
    assert "version" not in json.loads(json.loads(sign_desired(follow, KEY))["signed"])
    for bad in ({"channel": "canary"}, {"version": None}, {"version": None, "channel": "a/b"},
                {"version": None, "channel": "canary", "allow_downgrade": True}):
        with pytest.raises(ValueError):
            state(**bad)
