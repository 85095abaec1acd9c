"""Signed command wire format: round trip, tampering, wrong keys, time limits, targets and a fuzzed parser."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.command_signing import (
    CLOCK_SKEW_MS,
    MAX_LIFETIME_MS,
    CommandBody,
    Target,
    build_body,
    check_addressed,
    check_sequence,
    check_time,
    encode_body,
    is_signed,
    load_json_object,
    next_sequence,
    parse_envelope,
    reply_id,
    sign_command,
    text_request_id,
    verify_envelope,
)
from shared.errors import CommandError, CommandRefused
from shared.payloads import DeployCommand, parse_command
from shared.signing import key_id

NOW = 1_800_000_000_000
KEY = Ed25519PrivateKey.generate()
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
LAB = Target(fleet="lab", device="cam-3")


def body(**over: Any) -> CommandBody:
    kw: dict[str, Any] = {"request_id": "r1", "seq": 7, "now_ms": NOW, "expires_in_s": 60,
                          "args": {"version": 3, "pin": True}}
    name = over.pop("name", "deploy")
    target = over.pop("target", LAB)
    kw.update(over)
    return build_body(name, target, **kw)


def wire(b: CommandBody, key: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    doc = json.loads(sign_command(b, key))
    assert isinstance(doc, dict)
    return doc


def verify(doc: dict[str, Any]) -> CommandBody:
    return verify_envelope(parse_envelope(doc), TRUSTED)


def refusal(doc: dict[str, Any]) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        verify(doc)
    return info.value


def test_round_trip_gives_back_the_body_and_a_command_the_payload_schema_accepts() -> None:
    b = body()
    doc = wire(b)
    assert is_signed(doc) and set(doc) == {"signed", "key_id", "sig"}
    assert doc["key_id"] == key_id(KEY.public_key()) and len(doc["key_id"]) == 16
    got = verify(doc)
    assert got == b
    command = parse_command("deploy", got.command_payload())
    assert isinstance(command, DeployCommand)
    assert (command.id, command.version, command.pin, command.allow_downgrade) == ("r1", 3, True, False)


def test_the_signature_covers_the_exact_text_sent_not_a_re_serialisation() -> None:
    doc = wire(body())
    # Same JSON meaning, different bytes (a space): a verifier that re-serialised would accept it.
    doc["signed"] = doc["signed"].replace('"seq":7', '"seq": 7')
    assert refusal(doc).reason == "bad_signature"


def test_canonical_bytes_are_deterministic_sorted_and_compact() -> None:
    a, b = body(), body()
    assert encode_body(a) == encode_body(b)
    text = encode_body(a)
    assert " " not in text and text.isascii()
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert json.loads(text)["target"] == {"fleet": "lab", "device": "cam-3", "group": None}
    # ed25519 is deterministic too: the whole wire message is reproducible
    assert sign_command(a, KEY) == sign_command(b, KEY)


@pytest.mark.parametrize(
    "field,value",
    [("seq", 8), ("expires_at_ms", NOW + 3_000_000), ("id", "r2"), ("name", "ping")],
)
def test_any_change_to_the_body_breaks_the_signature(field: str, value: Any) -> None:
    doc = wire(body())
    inner = json.loads(doc["signed"])
    inner[field] = value
    doc["signed"] = json.dumps(inner, sort_keys=True, separators=(",", ":"))
    r = refusal(doc)
    assert r.reason == "bad_signature" and "does not match" in str(r)
    assert r.request_id == inner["id"]  # the reply can still be addressed


def test_args_and_target_changes_break_the_signature_too() -> None:
    for mutate in (lambda d: d["args"].update(version=1), lambda d: d["target"].update(device="cam-4")):
        doc = wire(body())
        inner = json.loads(doc["signed"])
        mutate(inner)
        doc["signed"] = json.dumps(inner, sort_keys=True, separators=(",", ":"))
        assert refusal(doc).reason == "bad_signature"


def test_a_key_not_trusted_is_refused_by_id_and_a_claimed_trusted_id_does_not_help() -> None:
    other = Ed25519PrivateKey.generate()
    r = refusal(wire(body(), other))
    assert r.reason == "unknown_key" and key_id(other.public_key()) in str(r)
    assert "device.command_keys" in str(r)
    forged = wire(body(), other)
    forged["key_id"] = key_id(KEY.public_key())
    assert refusal(forged).reason == "bad_signature"


@pytest.mark.parametrize(
    "sig,why",
    [("not base64!", "not base64"), (base64.b64encode(b"x" * 10).decode(), "not an ed25519"), (5, "no signature")],
)
def test_malformed_signatures_are_bad_signatures(sig: Any, why: str) -> None:
    doc = wire(body())
    doc["sig"] = sig
    with pytest.raises(CommandRefused, match=why) as info:
        parse_envelope(doc)
    assert info.value.reason == "bad_signature" and info.value.request_id == "r1"


@pytest.mark.parametrize(
    "doc,why",
    [
        ({"signed": 5, "key_id": "k", "sig": ""}, "'signed'"),
        ({"signed": "{}", "sig": ""}, "'key_id'"),
        ({"signed": "{}", "key_id": "k", "sig": "", "extra": 1}, "unknown fields"),
        ({"signed": "x" * 20_000, "key_id": "k", "sig": ""}, "over the"),
    ],
)
def test_malformed_envelopes_are_command_errors(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(CommandError, match=why):
        parse_envelope(doc)


def test_a_body_signed_by_a_trusted_key_must_still_be_well_formed() -> None:
    text = json.dumps({"id": "r", "name": "deploy"})
    sig = base64.b64encode(KEY.sign(text.encode())).decode()
    doc = {"signed": text, "key_id": key_id(KEY.public_key()), "sig": sig}
    with pytest.raises(CommandError, match="malformed") as info:
        verify(doc)
    assert not isinstance(info.value, CommandRefused)


def test_expired_commands_say_how_long_ago() -> None:
    b = body(expires_in_s=60)
    check_time(b, NOW + 60_000 + CLOCK_SKEW_MS - 1)  # within the clock-skew allowance
    with pytest.raises(CommandRefused, match=r"expired 90\.0 s ago") as info:
        check_time(b, NOW + 150_000)
    assert info.value.reason == "expired" and info.value.request_id == "r1"
    with pytest.raises(CommandRefused, match="expired 2 days ago"):
        check_time(b, NOW + 2 * 86_400_000 + 60_000)


def test_not_yet_valid_and_too_long_lived_commands_are_refused() -> None:
    b = body()
    check_time(b, NOW - CLOCK_SKEW_MS)  # a sender clock slightly ahead is fine
    with pytest.raises(CommandRefused, match="in the future") as info:
        check_time(b, NOW - 10 * 60_000)
    assert info.value.reason == "not_yet_valid"
    long_lived = body().model_copy(update={"expires_at_ms": NOW + MAX_LIFETIME_MS + 10 * 60_000})
    with pytest.raises(CommandRefused, match="beyond the") as info:
        check_time(long_lived, NOW)
    assert info.value.reason == "not_yet_valid"


def test_build_refuses_bad_expiry_and_bad_fields() -> None:
    for bad in (0, -1, MAX_LIFETIME_MS / 1000 + 1, float("nan")):
        with pytest.raises(CommandError, match="expiry"):
            body(expires_in_s=bad)
    with pytest.raises(CommandError, match="unknown command"):
        body(name="reboot")
    with pytest.raises(CommandError, match="args may not set id"):
        body(args={"id": "x"})
    with pytest.raises(CommandError, match="seq"):
        body(seq=0)
    with pytest.raises(ValueError, match="not both"):
        Target(fleet="lab", device="a", group="b")
    with pytest.raises(ValueError, match="invalid"):
        Target(fleet="lab/#")


@pytest.mark.parametrize(
    "target,ok",
    [
        (Target(fleet="lab", device="cam-3"), True),
        (Target(fleet="lab"), True),
        (Target(fleet="lab", group="roof"), True),
        (Target(fleet="lab", device="cam-4"), False),
        (Target(fleet="other", device="cam-3"), False),
        (Target(fleet="other"), False),
        (Target(fleet="lab", group="basement"), False),
        (Target(fleet="other", group="roof"), False),
    ],
)
def test_targets(target: Target, ok: bool) -> None:
    b = body(target=target)
    if ok:
        check_addressed(b, "deploy", "lab", "cam-3", frozenset({"roof", "north"}))
        return
    with pytest.raises(CommandRefused, match=r"not in it|not for this") as info:
        check_addressed(b, "deploy", "lab", "cam-3", frozenset({"roof", "north"}))
    assert info.value.reason == "not_addressed"


def test_a_command_signed_for_one_name_is_refused_on_another_topic() -> None:
    with pytest.raises(CommandRefused, match="signed as 'deploy' but arrived on cmd/set-config") as info:
        check_addressed(body(), "set-config", "lab", "cam-3", frozenset())
    assert info.value.reason == "not_addressed"


def test_sequence_must_grow() -> None:
    b = body(seq=7)
    check_sequence(b, "k", None)
    check_sequence(b, "k", 6)
    for last in (7, 8):
        with pytest.raises(CommandRefused, match="replayed") as info:
            check_sequence(b, "k", last)
        assert info.value.reason == "replayed"


def test_next_sequence_is_monotonic_and_never_below_the_clock() -> None:
    assert next_sequence(None, NOW) == NOW
    assert next_sequence(NOW, NOW) == NOW + 1
    assert next_sequence(NOW + 50, NOW) == NOW + 51  # clock went back: still above the last
    assert next_sequence(5, NOW) == NOW


def test_reply_id_reads_signed_and_unsigned_payloads() -> None:
    assert reply_id(sign_command(body(), KEY)) == "r1"
    assert reply_id(b'{"id": "plain"}') == "plain"
    assert reply_id(b"[") is None and reply_id(b'{"signed": "nope"}') is None and reply_id(b'"x"') is None


def test_lone_surrogates_in_the_signed_text_are_refused_not_crashed() -> None:
    text = '{"id": "a\ud800"}'  # what json.loads makes of a \ud800 escape: a str that is not UTF-8 encodable
    doc = {"signed": text, "key_id": key_id(KEY.public_key()), "sig": base64.b64encode(b"s" * 64).decode()}
    assert refusal(doc).reason == "bad_signature"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutated_envelopes() -> st.SearchStrategy[bytes]:
    good = json.loads(sign_command(body(), KEY))
    fields = st.fixed_dictionaries(
        {}, optional={k: st.one_of(st.just(good[k]), _json) for k in ("signed", "key_id", "sig")} | {"x": _json},
    )
    return st.one_of(
        st.binary(max_size=300),
        _json.map(lambda v: json.dumps(v).encode()),
        fields.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=200).map(lambda t: json.dumps({**good, "signed": t}).encode()),
    )


@settings(max_examples=300, deadline=None, database=None)
@given(payload=_mutated_envelopes())
def test_the_parser_only_ever_accepts_or_raises_a_command_error(payload: bytes) -> None:
    try:
        doc = load_json_object(payload)
        if not is_signed(doc):
            return
        got = verify(doc)
    except CommandError as exc:
        assert str(exc)
        return
    assert got == body()  # the only thing that may verify is the untouched message


@pytest.mark.parametrize("issued_at_ms", [NOW - 9 * 3_600_000 - 1_800_000, 0, NOW - MAX_LIFETIME_MS - 1])
def test_the_lifetime_limit_is_expiry_minus_issue_not_the_time_remaining(issued_at_ms: int) -> None:
    # Expires 30 min from now, within the limit if only the time left counted.
    b = body().model_copy(update={"issued_at_ms": issued_at_ms, "expires_at_ms": NOW + 1_800_000})
    with pytest.raises(CommandRefused, match="beyond the 60 min limit") as info:
        check_time(b, NOW)
    assert info.value.reason == "not_yet_valid" and info.value.request_id == "r1"


def test_the_longest_lifetime_a_sender_can_sign_is_accepted_until_it_expires() -> None:
    b = body(expires_in_s=MAX_LIFETIME_MS / 1000)
    assert b.expires_at_ms - b.issued_at_ms == MAX_LIFETIME_MS
    check_time(b, NOW)
    check_time(b, NOW + MAX_LIFETIME_MS - 1)


def test_request_ids_that_are_not_utf8_text_are_never_echoed() -> None:
    assert reply_id(b'{"id":"\\ud800"}') is None
    assert reply_id(json.dumps({"signed": '{"id":"\\udfff"}', "key_id": "k", "sig": "x"}).encode()) is None
    with pytest.raises(CommandError, match="id"):
        body(request_id="\ud800")
    with pytest.raises(CommandError, match="control characters"):
        body(request_id="a\nb")
    assert text_request_id("r-1") == "r-1" and text_request_id("\x1b[2J") is None and text_request_id(7) is None
