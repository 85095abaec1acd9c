"""What this device can run: CPU flags, CUDA provider, GPU identity and TensorRT version, detected once at start."""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
from pathlib import Path

from edge.backends.base import Hardware

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"

# Jetson SoCs by device-tree 'compatible' entry: (CUDA device name, compute capability).
JETSON_SOCS: dict[str, tuple[str, str]] = {
    "nvidia,tegra234": ("Orin", "8.7"),
    "nvidia,tegra194": ("Xavier", "7.2"),
    "nvidia,tegra186": ("NVIDIA Tegra X2", "6.2"),
    "nvidia,tegra210": ("NVIDIA Tegra X1", "5.3"),
}


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo text: the x86 'flags' line or the ARM 'Features' line."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def parse_nvidia_smi(output: str) -> tuple[str, str | None] | None:
    """(GPU name, compute capability) of the first GPU in `nvidia-smi --query-gpu=name,compute_cap` CSV output."""
    for line in output.splitlines():
        if not line.strip():
            continue
        name, _, cap = (part.strip() for part in line.partition(","))
        if not name:
            return None
        return name, (cap if cap and cap[0].isdigit() else None)
    return None


def parse_jetson(compatible: bytes) -> tuple[str, str] | None:
    """(GPU name, compute capability) of a Jetson from its NUL-separated device-tree 'compatible' list."""
    for entry in compatible.split(b"\0"):
        known = JETSON_SOCS.get(entry.decode("ascii", "replace").strip())
        if known:
            return known
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        log.info("onnxruntime is not installed; assuming no CUDA execution provider")
        return []
    return list(onnxruntime.get_available_providers())


def _nvidia_smi() -> tuple[str, str | None] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi present but failed (%s); GPU identity unknown", exc)
        return None
    return parse_nvidia_smi(out)


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but its shared libraries are not
        log.debug("TensorRT unavailable: %s", exc)
        return None
    return str(tensorrt.__version__)


def detect_hardware(
    cpuinfo_path: Path = Path("/proc/cpuinfo"), device_tree: Path = Path("/proc/device-tree")
) -> Hardware:
    """Probe this machine; every probe that fails just leaves its field unknown."""
    cpuinfo = _read_text(cpuinfo_path) or ""
    providers = _onnxruntime_providers()
    extra = {"machine": platform.machine(), "onnxruntime_providers": ",".join(providers)}
    gpu = _nvidia_smi()
    try:
        compatible = (device_tree / "compatible").read_bytes()
    except OSError:
        compatible = b""
    jetson = parse_jetson(compatible)
    if jetson is not None:
        board = _read_text(device_tree / "model")
        if board:
            extra["board"] = board.strip("\0\n ")
        gpu = gpu or jetson
    hw = Hardware(
        cpu_features=parse_cpu_flags(cpuinfo),
        cuda=CUDA_PROVIDER in providers,
        gpu_name=gpu[0] if gpu else None,
        compute_capability=gpu[1] if gpu else None,
        tensorrt_version=_tensorrt_version(),
        extra=extra,
    )
    log.info(
        "hardware: %d CPU flags, cuda=%s, gpu=%s (cc %s), tensorrt=%s",
        len(hw.cpu_features),
        hw.cuda,
        hw.gpu_name,
        hw.compute_capability,
        hw.tensorrt_version,
    )
    return hw
