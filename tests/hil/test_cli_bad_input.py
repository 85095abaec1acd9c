"""Bad input to `edgeferry hil run` stops with one line and exit 2, before anything is created: no namespace, no
mount, no process left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil import netns as netns_mod
from hil.netns import list_namespaces
from hil.session_run import run_all

ROOT = Path(__file__).resolve().parents[2]
EF = [sys.executable, "-m", "edgeferry.cli", "hil", "run"]


def _mounts() -> str:
    return Path("/proc/mounts").read_text()


def _hil(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EF, "--out", str(tmp / "out"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "no_such"], "error: unknown scenario no_such; known: first_deploy,"),
    (["--variants", "fp64"], "error: unknown variant fp64; choose from fp32, int8, fp16, auto"),
    (["--target", "serial:/dev/ttyUSB0"], "error: unknown target 'serial:/dev/ttyUSB0'; use netns, ssh-lab or"),
    (["--target", "ssh://root@127.0.0.1:1"], "error: an ssh:// target needs --ssh-key PATH"),
    (["--target", "ssh://Bad User@host"], "error: SSH target 'ssh://Bad User@host'"),
    (["--plan", "missing.json"], "error: cannot read fault plan missing.json: No such file or directory"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    before_ns, before_mounts = list_namespaces(), _mounts()
    done = _hil(*args, tmp=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert list_namespaces() == before_ns and _mounts() == before_mounts
    assert not (tmp_path / "out").exists()


def test_a_fault_plan_that_does_not_validate_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"name": "bad", "steps": [{"kind": "delay", "at_s": 0, "ms": 10, "jitter_ms": 50}]}))
    done = _hil("--plan", str(plan), tmp=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid fault plan:") and "jitter_ms (50) must not exceed ms (10)" in (
        done.stderr)
    plan.write_text("{not json")
    done = _hil("--plan", str(plan), tmp=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: fault plan is not valid JSON")


def test_an_unreachable_ssh_target_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    done = _hil("--target", "ssh://root@127.0.0.1:1", "--ssh-key", str(key), tmp=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "error: SSH target root@127.0.0.1:1 is unreachable:" in done.stderr and "refused" in done.stderr


def test_not_root_stops_the_netns_target_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 1000)
    said: list[str] = []
    code = run_all(targets=["netns"], scenario_names=["first_deploy"], variants=["fp32"], out=tmp_path / "out",
                   key=None, remote_python="python3", store=ROOT / ".store", model="digits", plan_path=None,
                   quick=False, seed=0, echo=said.append)
    assert code == 2
    assert said == ["error: the HIL lab needs network namespaces: not root (euid 1000): network namespaces need "
                    "root; CI runs the suite as root"]
