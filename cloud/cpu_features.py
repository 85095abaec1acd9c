"""CPU flags of the build machine: they decide the INT8 settings and are recorded in the manifest."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Any of these gives x86 an 8-bit dot product (VPDPBUSD / AMX) that accumulates U8S8 without int16 saturation.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Flags that matter for ONNX Runtime kernels; only these go into Target.cpu_features (the full list is noise).
RELEVANT_FLAGS = frozenset(
    {
        "sse2", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
        "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
        "avx_vnni", "amx_int8", "amx_bf16",
        "neon", "asimd", "asimddp", "asimdhp", "i8mm", "sve", "sve2", "bf16",
    }
)
_X86 = frozenset({"x86_64", "amd64", "i386", "i686"})
_ARM = frozenset({"aarch64", "arm64", "armv7l", "armv8l"})


@dataclass(frozen=True)
class CpuInfo:
    """What INT8 quantization needs to know about a CPU."""

    machine: str
    flags: frozenset[str]

    @property
    def is_x86(self) -> bool:
        """x86 CPUs are identified by machine name, or by SSE2 when the name is unknown."""
        return self.machine.lower() in _X86 or (not self.machine and "sse2" in self.flags)

    @property
    def is_arm(self) -> bool:
        """ARM CPUs: machine name, or the NEON/ASIMD flags of /proc/cpuinfo 'Features'."""
        return self.machine.lower() in _ARM or bool({"asimd", "neon"} & self.flags)

    @property
    def vnni(self) -> bool:
        """Whether this CPU has an 8-bit dot-product instruction that avoids U8S8 saturation."""
        return bool(self.flags & VNNI_FLAGS)

    def recorded_features(self) -> list[str]:
        """The sorted subset of flags worth recording in the manifest."""
        return sorted(self.flags & RELEVANT_FLAGS)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """Feature flags from /proc/cpuinfo text: the x86 'flags' line or the ARM 'Features' line (first CPU)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def detect_cpu(cpuinfo_path: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> CpuInfo:
    """This machine's CPU; unreadable cpuinfo (macOS, containers) yields no flags and a logged notice."""
    try:
        text = cpuinfo_path.read_text(errors="replace")
    except OSError as exc:
        log.info("cannot read %s (%s); CPU features unknown", cpuinfo_path, exc.strerror)
        text = ""
    return CpuInfo(machine=platform.machine() if machine is None else machine, flags=parse_cpu_flags(text))
