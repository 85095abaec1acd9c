"""Runs the web app under uvicorn on a thread of its own, so `fleet serve` has one process with one lifecycle."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from dashboards.errors import DashboardError


class WebServer:
    """start() returns once the port listens (and the live channel took its first snapshot); stop() undoes it."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        # proxy_headers off: the app believes X-Forwarded-* only from the web config's trusted_proxies.
        self._config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                      access_log=False, timeout_graceful_shutdown=3, proxy_headers=False)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """Where a browser reaches it."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Serve in the background; DashboardError when it cannot bind or start in time."""
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise DashboardError(f"web app could not listen on {self.host}:{self.port} (port taken?)")
            if time.monotonic() > deadline:
                raise DashboardError(f"web app did not start on {self.host}:{self.port} within {timeout_s:g} s")
            time.sleep(0.02)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Finish open requests (live streams end) and stop."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
