"""Stand-in MJPEG cameras (hil.mjpeg_camera) run on the device target: started, stopped ("unplugged") and started
again on the same port, each counting the frames it sent, so the scenarios that lose a camera share one way to do it.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from hil.device import DeviceTarget

# Ports the cameras of one scenario run listen on (device loopback): 18600 + run number, spread over this many.
PORT_BASE = 18600
PORT_SPAN = 400


def camera_port(run_id: str, index: int = 0, per_run: int = 1) -> int:
    """The port of camera `index` of a run: distinct across a session's runs (its ids end in a counter)."""
    run = int(run_id.rsplit("-", 1)[1])
    return PORT_BASE + (run * per_run + index) % PORT_SPAN


class DeviceCamera:
    """One HTTP MJPEG camera on the device: its own port, pid file and sent-frames log under the run's directory."""

    def __init__(self, target: DeviceTarget, run_dir: str, name: str, port: int, fps: float = 15.0) -> None:
        self.target = target
        self.name = name
        self.port = port
        self.fps = fps
        self.log = f"{run_dir}/{name}.frames"
        self.pid = f"{run_dir}/{name}.pid"
        self.proc: subprocess.Popen[Any] | None = None
        target.shell(f"mkdir -p {shlex.quote(run_dir)}; : > {shlex.quote(self.log)}")

    @property
    def url(self) -> str:
        """Where the agent on the device reads the camera."""
        return f"http://127.0.0.1:{self.port}/camera.mjpg"

    def start(self) -> None:
        """Start serving, numbering frames on from the last one sent (a camera plugged back in)."""
        script = (f"echo $$ > {shlex.quote(self.pid)}; exec {shlex.quote(self.target.python)} -m hil.mjpeg_camera "
                  f"--port {self.port} --fps {self.fps:g} --log {shlex.quote(self.log)} "
                  f"--start-index {self.frames_sent()}")
        self.proc = self.target.spawn(script)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the camera (unplugged) and wait until it is gone; a camera not running is left alone."""
        self.target.shell(f"kill -TERM $(cat {shlex.quote(self.pid)} 2>/dev/null) 2>/dev/null || true")
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.target.shell(f"kill -KILL $(cat {shlex.quote(self.pid)} 2>/dev/null) 2>/dev/null || true")
                self.proc.wait(timeout)
            self.proc = None

    def frames_sent(self) -> int:
        """Frames the camera has sent so far, over every start."""
        return len(self.target.read(self.log).splitlines())
