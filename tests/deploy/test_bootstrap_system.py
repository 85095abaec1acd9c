"""deploy/scripts/bootstrap-system.sh: silent and apt-free when everything is there; otherwise one apt-get update
and one install of exactly what is missing (root), or one line naming the command (not root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scripts" / "bootstrap-system.sh"
MISSING = "edgeferry-test-pkg:edgeferry-test-cmd"


def fake_bin(tmp_path: Path, uid: int) -> Path:
    """A PATH entry with an `id` reporting uid and an `apt-get` that logs its calls and 'installs' the command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/apt.log\n'
        'case "$*" in *install*edgeferry-test-pkg*) '
        f"printf '#!/bin/sh\\n' > {bin_dir}/edgeferry-test-cmd; chmod +x {bin_dir}/edgeferry-test-cmd;; esac\n"
    )
    for tool in ("id", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def run(tmp_path: Path, uid: int, extra: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_bin(tmp_path, uid)}:{os.environ['PATH']}", "EDGEFERRY_EXTRA_PACKAGES": extra}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_nothing_missing_is_silent_and_calls_no_apt(tmp_path: Path) -> None:
    done = run(tmp_path, uid=0)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "apt.log").exists()


def test_not_root_stops_with_the_exact_command(tmp_path: Path) -> None:
    done = run(tmp_path, uid=1000, extra=MISSING)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "bootstrap-system: missing edgeferry-test-pkg; run: sudo apt-get update && "
        "sudo apt-get install -y --no-install-recommends edgeferry-test-pkg"
    ]
    assert not (tmp_path / "apt.log").exists()


def test_root_updates_once_and_installs_only_what_is_missing(tmp_path: Path) -> None:
    done = run(tmp_path, uid=0, extra=MISSING)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq", "install -y -qq --no-install-recommends edgeferry-test-pkg"]
    assert done.stderr == "bootstrap-system: installing edgeferry-test-pkg\n"


def test_an_install_that_does_not_provide_the_command_fails(tmp_path: Path) -> None:
    done = run(tmp_path, uid=0, extra="edgeferry-test-pkg:edgeferry-other-cmd")
    assert done.returncode == 1
    assert "still not on PATH: edgeferry-other-cmd (edgeferry-test-pkg)" in done.stderr
