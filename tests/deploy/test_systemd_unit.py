"""The agent's and the fleet control plane's systemd units pass systemd's own checks: `systemd-analyze verify` and
`security` (offline, so no running systemd is needed; this container has none)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "edgeferry-agent.service"
NAME = UNIT.name
FLEET_UNIT = UNIT.with_name("edgeferry-fleet.service")
UNITS = [UNIT, FLEET_UNIT]
MAX_EXPOSURE = 4.0
SYSTEM_UNITS = Path("/usr/lib/systemd/system")  # the host's targets (network-online, multi-user, sysinit, ...)


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: run deploy/scripts/bootstrap-system.sh (Debian package systemd)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def unit_lines(unit: Path = UNIT) -> list[tuple[str, str]]:
    """(key, value) of every setting in the unit, in order."""
    out = []
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_verify_reports_nothing(tmp_path: Path, unit: Path) -> None:
    # verify checks that ExecStart/ExecReload binaries exist and resolves dependencies: a root holding the host's
    # unit files, /bin/kill and a stand-in for the installed agent lets it check the unit exactly as shipped.
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "bin").mkdir()
    shutil.copy2("/bin/kill", tmp_path / "bin/kill")
    agent = tmp_path / "opt/edgeferry/.venv/bin/edgeferry"
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    installed = tmp_path / "etc/systemd/system" / unit.name
    installed.parent.mkdir(parents=True)
    shutil.copy2(unit, installed)
    exec_start = dict(unit_lines(unit))["ExecStart"].split()[0]
    assert Path(tmp_path / exec_start.lstrip("/")) == agent, "ExecStart moved: update the stand-in path"

    done = analyze("verify", f"--root={tmp_path}", str(installed))
    # verify exits 0 even for unknown keys and unparsable values; it only prints them. Nothing printed = clean.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_security_rating_is_at_most_four(unit: Path) -> None:
    done = analyze("security", "--offline=true", "--no-pager", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit))
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr
    exposure = float(found.group(1))
    failing = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} {found.group(2)}; open items:\n" + "\n".join(failing)
    assert done.returncode == 0, done.stderr


def test_hardening_keeps_what_the_agent_needs() -> None:
    settings = unit_lines()
    one = dict(settings)
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main" and int(one["WatchdogSec"]) > 0
    assert one["ProtectSystem"] == "strict" and one["UMask"] == "0077"
    assert one["StateDirectory"] == "edgeferry" and one["CacheDirectory"] == "edgeferry"  # outbox, models
    assert one["WorkingDirectory"] == "/var/lib/edgeferry"
    assert one["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for k, v in settings if k == "DeviceAllow"}
    assert {"char-video4linux", "char-nvidia*", "char-nvhost*"} <= allowed  # camera, NVIDIA dGPU, Jetson
    families = one["RestrictAddressFamilies"].split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)  # broker and store; the notify socket
    assert one["CapabilityBoundingSet"] == ""


def test_fleet_unit_notifies_stops_cleanly_and_has_no_devices() -> None:
    one = dict(unit_lines(FLEET_UNIT))
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) > 0 and one["KillSignal"] == "SIGTERM"
    assert one["ExecStart"].split()[1:3] == ["fleet", "serve"]
    assert one["StateDirectory"] == "edgeferry-fleet" and one["WorkingDirectory"] == "/var/lib/edgeferry-fleet"
    assert one["PrivateDevices"] == "true" and one["CapabilityBoundingSet"] == ""
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(one["RestrictAddressFamilies"].split())
