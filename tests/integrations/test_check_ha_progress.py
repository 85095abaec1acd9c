"""`make check-ha` is not silent for minutes while it installs Home Assistant: a line when it starts, a line every
interval with the time and the packages pip has collected (never one per package), and how it ended."""

from __future__ import annotations

import sys

from tests.integrations.check_ha_discovery import run_with_progress

# Stands in for pip: collects 40 packages over about 1.2 s, then exits with the code it is given.
FAKE_PIP = """import sys, time
for i in range(40):
    print(f"Collecting package-{i}", flush=True)
    time.sleep(0.03)
sys.exit(int(sys.argv[1]))
"""


def test_a_long_install_reports_progress_a_line_at_a_time() -> None:
    lines: list[str] = []
    done = run_with_progress([sys.executable, "-c", FAKE_PIP, "0"], "installing X", lines.append, every_s=0.2)
    assert done.returncode == 0 and done.stdout.count("Collecting ") == 40
    assert lines[0].startswith("check-ha: installing X (the first run takes a few minutes")
    ticks = lines[1:-1]
    assert ticks and all("packages collected so far" in t for t in ticks), lines
    assert len(ticks) < 40  # a line per interval, not one per package
    assert lines[-1].startswith("check-ha: installing X: done in ")


def test_a_failed_install_says_so_and_keeps_pips_output_for_the_error() -> None:
    lines: list[str] = []
    done = run_with_progress([sys.executable, "-c", FAKE_PIP, "3"], "installing X", lines.append, every_s=5)
    assert done.returncode == 3 and "Collecting package-39" in done.stderr
    assert lines[-1].startswith("check-ha: installing X: FAILED (exit 3) in ")
