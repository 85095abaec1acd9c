"""The operator's issuer sequence (KEY.seq) and the checks `edgeferry cmd` makes before it touches the network."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeferry.cmd_client import BrokerOptions, IssuerSequence, send_command, sequence_path
from edgeferry.errors import CommandClientError
from shared.errors import CommandError

NOW = 1_800_000_000_000


def test_the_sequence_grows_across_takes_and_survives_a_clock_going_back(tmp_path: Path) -> None:
    seq = IssuerSequence(tmp_path / "op.seq")
    assert seq.take(NOW) == NOW
    assert seq.take(NOW) == NOW + 1
    assert IssuerSequence(tmp_path / "op.seq").take(NOW - 60_000) == NOW + 2  # a new process, an earlier clock
    assert (tmp_path / "op.seq").read_text() == f"{NOW + 2}\n"


def test_concurrent_invocations_never_share_a_number(tmp_path: Path) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(20):
            n = IssuerSequence(tmp_path / "op.seq").take(NOW)
            with lock:
                got.append(n)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(NOW, NOW + 80))


@pytest.mark.parametrize("content", ["", "abc", "-5", "12.5", "\xff"])
def test_a_damaged_sequence_file_is_one_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "op.seq").write_text(content, errors="surrogateescape")
    with pytest.raises(CommandClientError, match=r"op\.seq"):
        IssuerSequence(tmp_path / "op.seq").take(NOW)


def test_the_sequence_lives_beside_the_key() -> None:
    assert sequence_path(Path("/keys/operator")) == Path("/keys/operator.seq")
    assert sequence_path(Path("k/ops.key")) == Path("k/ops.key.seq")


@pytest.mark.parametrize(
    "name,args,expires,why",
    [
        ("reboot", {}, 60, "unknown command"),
        ("deploy", {"version": 0}, 60, "version"),
        ("deploy", {"colour": "red"}, 60, "colour"),
        ("ping", {}, 7200, "expiry"),
    ],
)
def test_a_bad_command_fails_before_the_network_and_uses_no_sequence(
    tmp_path: Path, name: str, args: dict[str, object], expires: float, why: str
) -> None:
    with pytest.raises(CommandError, match=why):
        send_command("cam-3", name, args, key_path=tmp_path / "op", key=Ed25519PrivateKey.generate(),
                     broker=BrokerOptions(port=1), expires_in_s=expires)
    assert not (tmp_path / "op.seq").exists()


def test_bad_device_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="device id"):
        send_command("cam/#", "ping", {}, key_path=Path("op"), key=Ed25519PrivateKey.generate())
