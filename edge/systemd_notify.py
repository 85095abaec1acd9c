"""systemd READY / WATCHDOG / STOPPING notifications; a no-op outside systemd (no NOTIFY_SOCKET)."""

from __future__ import annotations

import logging
import os

import sdnotify

log = logging.getLogger(__name__)


class Notifier:
    """Thin wrapper so the agent says what it means: ready(), watchdog(), stopping(), status()."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n = sdnotify.SystemdNotifier() if self.enabled else None
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_interval_s = int(usec) / 2e6 if usec and usec.isdigit() else None

    def _send(self, msg: str) -> None:
        if self._n is not None:
            self._n.notify(msg)

    def ready(self) -> None:
        """The agent is serving (or waiting for its first model) and connected to what it needs."""
        self._send("READY=1")

    def watchdog(self) -> None:
        """The main loop is alive."""
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        """A SIGHUP reload is in progress."""
        self._send("RELOADING=1")

    def stopping(self) -> None:
        """Shutdown started."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """One-line status shown by systemctl status."""
        self._send(f"STATUS={text}")
