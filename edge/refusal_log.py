"""Rate-limited log lines for refused input: anyone who can publish can cause a refusal, so no sender may be able
to grow the log by sending more.

Per (sender, reason) the first refusal of a window is logged; the rest are counted and summed up in one line
("N more ... refused for reason X in the last 60 s") once the window is over, at the next refusal or flush. Text
that came from the message is made printable ASCII and bounded before it reaches a log line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0
MAX_LINE = 400
# More distinct (sender, reason) pairs than this in one window are counted under one overflow entry.
MAX_KEYS = 64
_OVERFLOW = ("*", "*")
_NOT_ASCII_TEXT = re.compile(r"[^\x20-\x7e]")
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str, limit: int = MAX_LINE, *, ascii_only: bool = True) -> str:
    """One printable line: control characters and lone surrogates (and, ascii_only, all non-ASCII) escaped as
    \\uXXXX, bounded length; safe in any log and in a reply's UTF-8 JSON."""
    pattern = _NOT_ASCII_TEXT if ascii_only else _NOT_TEXT
    out = pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass
class _Window:
    started: float
    more: int = 0


class RefusalLog:
    """The first refusal per (sender, reason) and window is logged, the others summed up when the window ends."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}

    def refused(self, sender: str, reason: str, message: str) -> None:
        """Log this refusal if it is its (sender, reason)'s first in the window; otherwise count it."""
        now = self._clock()
        with self._lock:
            self._flush_locked(now)
            key = (sender, reason)
            if key not in self._windows and len(self._windows) >= MAX_KEYS:
                key = _OVERFLOW
            window = self._windows.get(key)
            if window is not None:
                window.more += 1
                return
            self._windows[key] = _Window(now)
        self._log.warning("%s refused: %s", self._what, printable(message))

    def flush(self) -> None:
        """Write the summaries of windows that are over (the telemetry loop calls this, so a burst is reported even
        when nothing follows it)."""
        with self._lock:
            self._flush_locked(self._clock())

    def _flush_locked(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.started < self._window_s:
                continue
            del self._windows[key]
            if window.more:
                sender, reason = key
                self._log.warning(
                    "%d more %s refused for reason %s (sender %s) in the last %.0f s", window.more, self._what,
                    printable(reason, 64), printable(sender, 64), self._window_s,
                )
