"""The agent refuses settings it cannot work with before it starts, with one line naming the key, instead of
warning about them on every poll."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]


def test_a_cache_dir_that_is_a_regular_file_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("a file, not a directory")
    run = subprocess.run(
        [*EDGEFERRY, "agent", "--store", str(tmp_path / "store"), "--set", f"sync.cache_dir={cache}",
         "--set", "mqtt.enabled=false", "--set", "sync.poll_interval_s=0.1", "--duration", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sync.cache_dir" in errors[0] and str(cache) in errors[0], run.stderr
    assert "Traceback" not in run.stderr and "current.json" not in run.stderr, run.stderr
    assert cache.read_text() == "a file, not a directory"
