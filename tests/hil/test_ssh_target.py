"""The SSH target against a real OpenSSH server in the lab's device namespace: login checks that fail in one line
(wrong key, unusable or old Python), and the agent installed from the wheel running a scenario, with nothing left
behind afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.errors import HilError
from hil.harness import new_report, run_target
from hil.netns import list_namespaces, netns_unavailable
from hil.packages import load_package
from hil.pair import PairHarness
from hil.scenarios import select
from hil.session_run import _ssh_lab_factory
from hil.ssh_target import LabSshd, SshDevice, build_wheel

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[PairHarness, LabSshd]]:
    why = netns_unavailable()
    if why is not None:
        pytest.skip(why)
    with PairHarness() as lab:
        server = LabSshd(lab, tmp_path / "sshd").start()
        try:
            yield lab, server
        finally:
            server.stop()


def device(lab: PairHarness, server: LabSshd, key: Path | None = None, python: str = "python3") -> SshDevice:
    return SshDevice(server.address(), key or server.client_key, known_hosts=server.known_hosts,
                     client_netns=lab.cloud, remote_python=python)


def test_login_checks_root_and_python_then_cleans_its_work_dir(sshd: tuple[PairHarness, LabSshd]) -> None:
    lab, _server = sshd
    dev = device(*sshd).connect()
    workdir = dev.workdir
    try:
        assert dev.root and workdir.startswith("/tmp/edgeferry-hil-ssh.")
        # Commands really run in the device namespace: it sees the device end of the veth.
        assert lab.device_ip in dev.shell("ip -o -4 addr show").stdout
        data = bytes(range(256)) * 10  # every byte value, CR and LF included, survives the round trip
        dev.write(f"{workdir}/sub/file.bin", data)
        assert dev.read(f"{workdir}/sub/file.bin") == data
    finally:
        dev.close()
    assert not Path(workdir).exists()


def test_a_key_the_device_does_not_know_is_refused_in_one_line(sshd: tuple[PairHarness, LabSshd],
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    with pytest.raises(HilError, match=r"refused the key .*other_key: .*Permission denied"):
        device(*sshd, key=other).connect()


def test_a_device_without_python_3_10_is_refused(sshd: tuple[PairHarness, LabSshd], tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\n")
    old.chmod(0o755)
    with pytest.raises(HilError, match=r"has Python 3\.9; the agent needs 3\.10\+"):
        device(*sshd, python=str(old)).connect()
    with pytest.raises(HilError, match="has no usable /nonexistent/python3"):
        device(*sshd, python="/nonexistent/python3").connect()


@pytest.mark.slow
def test_the_agent_from_the_wheel_deploys_over_ssh_and_nothing_is_left(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheel")
    base = load_package(ROOT / ".store")
    report = new_report(base)
    before, dirs_before = list_namespaces(), set(Path("/tmp").glob("edgeferry-hil-ssh.*"))
    run_target("ssh", _ssh_lab_factory(wheel), select(["first_deploy"]), ["fp32"], base, report,
               tmp_path / "out")
    (row,) = report.rows
    assert row.status == "pass", row
    assert row.target == "ssh" and row.figures["publish_to_serving_s"] is not None
    # The S3 proxy forwarded what the device's link received: the traffic went through it. The rest of what the
    # link received is SSH, MQTT and TCP/IP headers: a few tens of KiB, which matter only for a small package.
    from_store, rx = int(row.figures["bytes_from_store"] or 0), int(row.figures["device_rx_bytes"] or 0)
    assert 0 < from_store <= rx and rx - from_store < max(0.1 * rx, 64 * 1024), (from_store, rx)
    logs = list((tmp_path / "out" / "logs" / "ssh").rglob("*.log"))
    assert logs and "activated" in logs[0].read_text()
    assert not list_namespaces() - before
    assert not set(Path("/tmp").glob("edgeferry-hil-ssh.*")) - dirs_before  # the device's work dir is removed
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in ps
