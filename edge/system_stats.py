"""Process and platform figures for telemetry: CPU, memory, temperature, Jetson GPU load; unknown ones omitted."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
# Jetson GPU load in per-mille: gpu.0 on Nano/TX2/Xavier; the platform path on Orin and newer kernels.
GPU_LOAD_PATHS = (
    Path("/sys/devices/gpu.0/load"),
    Path("/sys/devices/platform/gpu.0/load"),
    Path("/sys/devices/platform/bus@0/17000000.gpu/load"),
)
_GR3D = re.compile(r"GR3D(?:_FREQ)?\s+(\d+)%")


def parse_tegrastats(line: str) -> float | None:
    """GPU percent from one tegrastats line ('... GR3D_FREQ 37%@[1300] ...'), None when it has none."""
    m = _GR3D.search(line)
    return float(m.group(1)) if m else None


def read_thermal_zones(root: Path = THERMAL_ROOT) -> float | None:
    """Hottest /sys thermal zone in °C (files hold millidegrees); None when there are none readable."""
    temps = []
    for zone in sorted(root.glob("thermal_zone*/temp")):
        try:
            raw = int(zone.read_text().strip())
        except (OSError, ValueError):
            continue  # zones of powered-down blocks fail to read; others still count
        temps.append(raw / 1000)
    return max(temps) if temps else None


def read_gpu_load(paths: Sequence[Path] = GPU_LOAD_PATHS) -> float | None:
    """Jetson GPU load in percent from the first readable sysfs node (per-mille), None when absent."""
    for path in paths:
        try:
            return int(path.read_text().strip()) / 10
        except (OSError, ValueError):
            continue
    return None


class SystemStats:
    """Samples figures on demand; cheap enough to call once per telemetry report."""

    def __init__(
        self,
        thermal_root: Path = THERMAL_ROOT,
        gpu_load_paths: Sequence[Path] = GPU_LOAD_PATHS,
        tegrastats: str | None = "tegrastats",
    ) -> None:
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first call only sets the baseline and returns 0
        self._thermal_root = thermal_root
        self._gpu_load_paths = gpu_load_paths
        self._tegrastats = shutil.which(tegrastats) if tegrastats else None

    def unreported(self) -> set[str]:
        """Platform figures this host cannot report, so dashboards need not announce them (gpu_mem_mb: none yet)."""
        return {"temp_c", "gpu_pct", "gpu_mem_mb"} - self.sample().keys()

    def sample(self) -> dict[str, float]:
        """cpu_pct, rss_mb, and temp_c / gpu_pct where the platform reports them."""
        out: dict[str, float] = {}
        try:
            out["cpu_pct"] = float(self._proc.cpu_percent(None))
            out["rss_mb"] = self._proc.memory_info().rss / (1024 * 1024)
        except psutil.Error as exc:
            log.debug("process figures unavailable: %s", exc)
        temp = self._temperature()
        if temp is not None:
            out["temp_c"] = temp
        gpu = read_gpu_load(self._gpu_load_paths)
        if gpu is None and self._tegrastats:
            gpu = self._tegrastats_gpu()
        if gpu is not None:
            out["gpu_pct"] = gpu
        return out

    def _temperature(self) -> float | None:
        sensors = getattr(psutil, "sensors_temperatures", None)
        if sensors is not None:
            try:
                readings = [t.current for entries in sensors().values() for t in entries if t.current is not None]
            except (OSError, RuntimeError) as exc:
                log.debug("psutil temperatures unavailable: %s", exc)
                readings = []
            if readings:
                return float(max(readings))
        return read_thermal_zones(self._thermal_root)

    def _tegrastats_gpu(self) -> float | None:
        """One tegrastats line (it streams forever, so read one and stop it)."""
        assert self._tegrastats is not None
        try:
            with subprocess.Popen(
                [self._tegrastats, "--interval", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            ) as proc:
                try:
                    line = proc.stdout.readline() if proc.stdout else ""
                finally:
                    proc.terminate()
        except OSError as exc:
            log.debug("tegrastats unavailable: %s", exc)
            self._tegrastats = None
            return None
        return parse_tegrastats(line)
