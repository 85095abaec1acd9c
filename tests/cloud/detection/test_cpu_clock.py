"""Training's CPU clock counts the loader workers while they run, not only once they have ended."""

from __future__ import annotations

import subprocess
import sys

from cloud.detection.cpu_clock import cpu_seconds

BURN_S = 0.5
# /proc counts in clock ticks (usually 10 ms), rounded down; the child's own clock is finer.
TICKS = 0.05
# Burns BURN_S of its own CPU time, says so, then waits (alive) until its stdin closes.
_WORKER = f"""
import sys, time
while time.process_time() < {BURN_S}:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


def test_a_live_child_process_s_cpu_time_is_counted_before_it_ends() -> None:
    before = cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "burnt"
        assert child.poll() is None, "the worker is still running"
        assert cpu_seconds() - before >= BURN_S - TICKS
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)
    assert cpu_seconds() - before >= BURN_S - TICKS, "still counted once it has ended and been waited for"
