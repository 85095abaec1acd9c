"""The one CPU clock of detector training: its CPU-time budget stops on it and its CPU-seconds figure is read from
it, so the figure reported is the work the budget allowed, loader workers included."""

from __future__ import annotations

import os

import psutil


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads), of its children that ended, and of live ones.

    Live children matter: loader workers run for a whole epoch, and a finished child's time reaches this
    process's own count only once it has ended and been waited for.
    """
    own = os.times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # ended between the listing and the read: its time moves to its parent's count
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total
