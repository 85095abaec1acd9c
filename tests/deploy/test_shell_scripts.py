"""shellcheck finds nothing in any shell script of the tree: every *.sh, the SLURM batch script, .ci/run, and any
other file starting with a shell shebang."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHEBANGS = ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash", "#!/usr/bin/env sh")
# Known scripts: the search below must find at least these, so an empty search cannot pass.
KNOWN = {"deploy/scripts/bootstrap-system.sh", "deploy/scripts/bootstrap-venv.sh", "deploy/mosquitto/provision.sh",
         "deploy/train/torchrun.sh", "deploy/train/slurm.sbatch", ".ci/run"}


def shell_scripts() -> list[str]:
    """Tracked and new (not ignored) files that are shell scripts, by name or by shebang."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    out = []
    for rel in listed:
        path = ROOT / rel
        if not path.is_file():
            continue  # deleted in the work tree
        if rel.endswith((".sh", ".sbatch")):
            out.append(rel)
            continue
        with path.open("rb") as f:
            head = f.readline(64).decode(errors="replace").strip()
        if head.startswith(SHEBANGS):
            out.append(rel)
    return sorted(out)


def test_shellcheck_finds_nothing() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck is missing: run deploy/scripts/bootstrap-system.sh (Debian package shellcheck)")
    scripts = shell_scripts()
    assert set(scripts) >= KNOWN, sorted(KNOWN - set(scripts))
    done = subprocess.run([exe, "--external-sources", *scripts], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
