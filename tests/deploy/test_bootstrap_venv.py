"""`make venv` (deploy/scripts/bootstrap-venv.sh) as a log shows it: a line per step with its time, a periodic line
while pip works instead of minutes of silence, nothing on a second run, and a failed install stops it without the
stamp that would skip it next time. pip itself is replaced by a stand-in interpreter, so no package is installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "scripts" / "bootstrap-venv.sh"
# Stands in for python3 and the venv's python: `-m venv DIR` copies itself, `-m pip install -e ...` takes a while
# (or fails), `-c ...` succeeds.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$1" in
  -m)
    if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
    if [ "$2" = pip ] && [[ " $* " == *" -e "* ]]; then
      echo "Collecting torch"
      sleep "$FAKE_PIP_S"
      exit "${FAKE_PIP_RC:-0}"
    fi ;;
esac
exit 0
"""


def bootstrap(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fake = tmp / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFERRY_", "VENV", "PYTHON"))}
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**clean, "VENV": str(tmp / "venv"), "PYTHON": str(fake), "EDGEFERRY_TORCH_CONSTRAINTS": "none",
             "EDGEFERRY_PROGRESS_EVERY_S": "0.2", "FAKE_PIP_S": "2", **env},
    )


def test_each_step_is_one_line_with_its_time_and_a_long_install_says_it_is_alive(tmp_path: Path) -> None:
    proc = bootstrap(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for n, title in enumerate(["virtual environment", "upgrading pip", "installing edgeferry[", "checking"], 1):
        assert any(line.startswith(f"bootstrap: [{n}/4] {title}") for line in lines), (title, proc.stderr)
        assert any(re.match(rf"bootstrap: \[{n}/4\] .*: done in \d+m\d\ds$", line) for line in lines), proc.stderr
    alive = [line for line in lines if "[3/4] installing" in line and "still running (" in line]
    assert alive, proc.stderr  # pip ran for 2 s with a line due every 0.2 s
    assert lines[-1].startswith("bootstrap: ready in ") and "bin/edgeferry" in lines[-1]
    # Off a terminal pip is quiet: what it prints is not multiplied into a line per package by the script.
    assert proc.stderr.count("Collecting torch") == 1
    # Set up: a second run says nothing.
    again = bootstrap(tmp_path)
    assert (again.returncode, again.stderr) == (0, "")


def test_a_failed_install_stops_with_one_line_and_is_retried_next_time(tmp_path: Path) -> None:
    proc = bootstrap(tmp_path, FAKE_PIP_RC="1", FAKE_PIP_S="0")
    assert proc.returncode == 1
    assert re.search(r"bootstrap: \[3/4\] installing .* FAILED after \d+m\d\ds \(exit 1\)", proc.stderr), proc.stderr
    assert not (tmp_path / "venv" / ".edgeferry-installed").exists()
    assert "[4/4]" not in proc.stderr
