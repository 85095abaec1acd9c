"""The one CPU clock of detector training: its CPU-time budget stops on it and its CPU-seconds figure is read from
it, so the figure reported is the work the budget allowed, loader workers included."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _live_descendants() -> list[int]:
    """Process ids of this process's live children and theirs (loader workers), from /proc, or psutil elsewhere."""
    if not Path(f"/proc/{os.getpid()}/task").is_dir():
        return [p.pid for p in psutil.Process().children(recursive=True)]
    found: list[int] = []
    frontier = [os.getpid()]
    while frontier:
        for listing in Path(f"/proc/{frontier.pop()}/task").glob("*/children"):
            try:
                kids = [int(pid) for pid in listing.read_text().split()]
            except OSError:  # the thread or process ended while we read
                continue
            found += kids
            frontier += kids
    return found


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads), of its children that ended, and of live ones.

    Live children matter: loader workers run for a whole epoch, and a finished child's time reaches this
    process's own count only once it has ended and been waited for.
    """
    own = os.times()
    total = own.user + own.system + own.children_user + own.children_system
    for pid in _live_descendants():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:  # ended between the listing and the read: its time moves to its parent's count
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total
