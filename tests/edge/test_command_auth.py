"""Device-side command authentication: trusted keys from local config, time and target checks, sequence state
that survives restarts and refuses safely when corrupt, and a counter per refusal reason."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.command_auth import CommandAuth, SequenceState, load_command_keys
from edge.config import DeviceConfig
from edge.errors import CommandStateError
from shared.command_signing import Target, build_body, sign_command
from shared.errors import CommandError, CommandRefused, KeyFileError
from shared.signing import key_id

NOW_S = 1_800_000_000.0
KEY = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())


class Clock:
    def __init__(self) -> None:
        self.now = NOW_S

    def __call__(self) -> float:
        return self.now


def signed(
    name: str = "ping", seq: int = 1, target: Target | None = None, key: Ed25519PrivateKey = KEY,
    issued_s: float = NOW_S, expires_in_s: float = 60, rid: str = "r1", **args: Any,
) -> bytes:
    body = build_body(name, target or Target(fleet="lab", device="cam-3"), request_id=rid, seq=seq,
                      now_ms=int(issued_s * 1000), expires_in_s=expires_in_s, args=args)
    return sign_command(body, key)


def auth(tmp_path: Path, clock: Clock | None = None, **kw: Any) -> CommandAuth:
    return CommandAuth(fleet="lab", device_id="cam-3", trusted={KID: KEY.public_key()},
                       state=SequenceState(tmp_path / "state" / "seq.json"), groups=frozenset({"roof"}),
                       clock=clock or Clock(), **kw)


def refused(a: CommandAuth, name: str, payload: bytes) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        a.admit(name, payload)
    return info.value


def test_a_signed_command_is_admitted_committed_and_its_sequence_persisted(tmp_path: Path) -> None:
    a = auth(tmp_path)
    admitted = a.admit("deploy", signed("deploy", seq=5, version=3))
    assert (admitted.key_id, admitted.seq) == (KID, 5)
    assert json.loads(admitted.payload) == {"id": "r1", "version": 3}
    assert not (tmp_path / "state" / "seq.json").exists()  # nothing persisted before the worker commits
    a.commit(admitted, "r1")
    assert json.loads((tmp_path / "state" / "seq.json").read_text()) == {"version": 1, "last": {KID: 5}}
    assert a.metrics()["cmd_refused"] == 0


def test_replays_are_refused_in_the_same_run_and_after_a_restart(tmp_path: Path) -> None:
    a = auth(tmp_path)
    a.commit(a.admit("ping", signed(seq=10)), "r1")
    for seq in (10, 9):
        r = refused(a, "ping", signed(seq=seq))
        assert r.reason == "replayed" and "not above the last accepted 10" in str(r)
    restarted = auth(tmp_path)
    assert refused(restarted, "ping", signed(seq=10)).reason == "replayed"
    restarted.commit(restarted.admit("ping", signed(seq=11)), "r1")
    assert restarted.metrics()["cmd_refused_replayed"] == 1


def test_two_copies_admitted_before_either_ran_still_run_once(tmp_path: Path) -> None:
    a = auth(tmp_path)
    first, second = a.admit("ping", signed(seq=3)), a.admit("ping", signed(seq=3))  # both queued
    a.commit(first, "r1")
    with pytest.raises(CommandRefused, match="replayed"):
        a.commit(second, "r1")
    assert a.refused()["replayed"] == 1


def test_sequences_are_per_key(tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    a = auth(tmp_path)
    a.trusted[key_id(other.public_key())] = other.public_key()
    a.commit(a.admit("ping", signed(seq=100)), "r1")
    a.commit(a.admit("ping", signed(seq=1, key=other)), "r1")
    assert SequenceState(tmp_path / "state" / "seq.json").last(KID) == 100


@pytest.mark.parametrize(
    "payload,reason,text",
    [
        (b'{"id": "u1"}', "unsigned", "unsigned command refused"),
        (signed(key=Ed25519PrivateKey.generate()), "unknown_key", "not in this device's device.command_keys"),
        (signed(issued_s=NOW_S - 600, expires_in_s=60), "expired", "expired 9 min ago"),
        (signed(issued_s=NOW_S + 600), "not_yet_valid", "in the future"),
        (signed(target=Target(fleet="lab", device="cam-4")), "not_addressed", "device cam-4 of fleet lab"),
        (signed(target=Target(fleet="yard", device="cam-3")), "not_addressed", "fleet yard"),
        (signed(target=Target(fleet="lab", group="basement")), "not_addressed", "not in it (groups: roof)"),
    ],
)
def test_refusals_name_their_reason_and_are_counted(tmp_path: Path, payload: bytes, reason: str, text: str) -> None:
    a = auth(tmp_path)
    r = refused(a, "ping", payload)
    assert (r.reason, r.request_id) == (reason, "u1" if reason == "unsigned" else "r1")
    assert text in str(r)
    figures = a.metrics()
    assert figures[f"cmd_refused_{reason}"] == 1 and figures["cmd_refused"] == 1
    assert sum(v for k, v in figures.items() if k != "cmd_refused") == 1


def test_commands_for_the_fleet_or_a_group_it_is_in_are_admitted(tmp_path: Path) -> None:
    a = auth(tmp_path)
    a.admit("ping", signed(target=Target(fleet="lab")))
    a.admit("ping", signed(target=Target(fleet="lab", group="roof")))


def test_a_tampered_command_is_a_bad_signature(tmp_path: Path) -> None:
    doc = json.loads(signed("deploy", version=3))
    doc["signed"] = doc["signed"].replace('"version":3', '"version":1')
    r = refused(auth(tmp_path), "deploy", json.dumps(doc).encode())
    assert r.reason == "bad_signature" and r.request_id == "r1"


def test_a_command_signed_for_another_name_is_refused(tmp_path: Path) -> None:
    assert refused(auth(tmp_path), "set-config", signed("ping")).reason == "not_addressed"


def test_a_clock_skew_within_the_allowance_is_accepted(tmp_path: Path) -> None:
    clock = Clock()
    a = auth(tmp_path, clock)
    clock.now = NOW_S + 60 + 20  # expired 20 s ago on this clock, within the 30 s allowance
    a.admit("ping", signed())
    clock.now = NOW_S - 20  # the sender's clock runs 20 s ahead
    a.admit("ping", signed())


def test_unsigned_commands_pass_only_when_allowed_and_leave_no_sequence(tmp_path: Path) -> None:
    a = auth(tmp_path, allow_unsigned=True)
    admitted = a.admit("ping", b'{"id": "u1"}')
    assert (admitted.payload, admitted.key_id) == (b'{"id": "u1"}', None)
    a.commit(admitted, "u1")
    assert not (tmp_path / "state" / "seq.json").exists()
    # signed ones are still checked
    assert refused(a, "ping", signed(key=Ed25519PrivateKey.generate())).reason == "unknown_key"


def test_malformed_and_oversized_payloads_are_command_errors_not_refusals(tmp_path: Path) -> None:
    a = auth(tmp_path)
    for payload, text in [(b"not json", "not JSON"), (b"[1]", "JSON object"), (b"[" * 10_000, "nested too deeply"),
                          (b"x" * 40_000, "over the"), (b'{"signed": 1, "sig": ""}', "'signed'")]:
        with pytest.raises(CommandError, match=text) as info:
            a.admit("ping", payload)
        assert not isinstance(info.value, CommandRefused)
    assert a.metrics()["cmd_refused"] == 0


def test_a_missing_state_file_is_one_log_line_and_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.command_auth"):
        state = SequenceState(tmp_path / "nope.json")
    assert state.corrupt is None and state.last(KID) is None
    assert len(caplog.records) == 1 and "no command sequence state" in caplog.records[0].getMessage()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b'{"version": 1, "last": {"k": -3}}', b"[]",
                                     b'{"version": 2, "last": {}}', b'{"version": 1, "last": {"k": 1.5}}'])
def test_a_corrupt_state_file_refuses_signed_commands_and_says_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state" / "seq.json"
    path.parent.mkdir()
    path.write_bytes(content)
    a = auth(tmp_path)
    r = refused(a, "ping", signed(seq=99))
    assert r.reason == "state_corrupt" and "is corrupt" in str(r) and str(path) in str(r)
    assert path.read_bytes() == content  # left for a person to look at
    assert a.metrics()["cmd_refused_state_corrupt"] == 1
    a.allow_unsigned = True
    a.admit("ping", b'{"id": "dev"}')  # development mode does not depend on it


def test_a_state_file_that_cannot_be_written_refuses_the_command_and_remembers_nothing(tmp_path: Path) -> None:
    a = auth(tmp_path)
    a.commit(a.admit("ping", signed(seq=1)), "r1")
    state_dir = tmp_path / "state"
    if os.geteuid() == 0:  # root ignores permissions: make the directory a file's path instead
        a.state.path = state_dir / "seq.json" / "x"
    else:
        state_dir.chmod(0o500)
    try:
        admitted = a.admit("ping", signed(seq=2))
        with pytest.raises(CommandStateError, match="cannot record the command sequence"):
            a.commit(admitted, "r1")
    finally:
        state_dir.chmod(0o700)
    assert a.state.last(KID) == 1
    assert not list(state_dir.glob(".seq.json.*.tmp"))


def test_state_writes_are_atomic_replacements(tmp_path: Path) -> None:
    state = SequenceState(tmp_path / "seq.json")
    state.record("a", 5)
    inode = (tmp_path / "seq.json").stat().st_ino
    state.record("b", 7)
    assert (tmp_path / "seq.json").stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert SequenceState(tmp_path / "seq.json").last("a") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.json"]


def test_keys_come_from_local_pem_files(tmp_path: Path) -> None:
    pub = tmp_path / "op.pub"
    pub.write_bytes(KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    assert list(load_command_keys([pub])) == [KID]
    cfg = DeviceConfig(fleet="lab", device_id="cam-3", command_keys=[pub], groups=["roof"],
                       command_state_path=tmp_path / "s.json")
    a = CommandAuth.from_config(cfg)
    assert a.groups == frozenset({"roof"}) and not a.allow_unsigned
    with pytest.raises(KeyFileError, match=r"missing\.pub"):
        load_command_keys([tmp_path / "missing.pub"])
    with pytest.raises(ValueError, match="device group"):
        DeviceConfig(groups=["a/b"])
