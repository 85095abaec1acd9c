"""Hardware detection: parsers on sample text, and a probe of this machine that must not fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.hardware import detect_hardware, parse_cpu_flags, parse_jetson, parse_nvidia_smi

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R)
flags\t\t: fpu vme sse2 avx avx2 avx512f avx512_vnni
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme sse2 avx avx2 avx512f avx512_vnni
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp
CPU implementer\t: 0x41
"""


def test_x86_flags() -> None:
    flags = parse_cpu_flags(X86_CPUINFO)
    assert {"avx2", "avx512_vnni", "sse2"} <= flags
    assert "spectre_v1" not in flags


def test_arm_features() -> None:
    assert {"asimd", "fp", "asimdhp"} <= parse_cpu_flags(ARM_CPUINFO)


def test_no_flags_line() -> None:
    assert parse_cpu_flags("processor: 0\n") == frozenset()


def test_nvidia_smi_csv() -> None:
    assert parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA H100 80GB HBM3, 9.0\n") == (
        "NVIDIA H100 80GB HBM3",
        "9.0",
    )
    assert parse_nvidia_smi("Tesla T4, [N/A]\n") == ("Tesla T4", None)
    assert parse_nvidia_smi("\n") is None


def test_jetson_compatible_list() -> None:
    assert parse_jetson(b"nvidia,p3737-0000+p3701-0000\0nvidia,tegra234\0") == ("Orin", "8.7")
    assert parse_jetson(b"nvidia,p3450-0000\0nvidia,tegra210\0") == ("NVIDIA Tegra X1", "5.3")
    assert parse_jetson(b"raspberrypi,4-model-b\0brcm,bcm2711\0") is None


def test_jetson_board_from_device_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.hardware.shutil.which", lambda name: None)  # Jetsons have no nvidia-smi
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ARM_CPUINFO)
    dt = tmp_path / "dt"
    dt.mkdir()
    (dt / "compatible").write_bytes(b"nvidia,p3767-0005\0nvidia,tegra234\0")
    (dt / "model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\0")
    hw = detect_hardware(cpuinfo, dt)
    assert "asimd" in hw.cpu_features
    assert (hw.gpu_name, hw.compute_capability) == ("Orin", "8.7")
    assert hw.extra["board"] == "NVIDIA Jetson Orin Nano Developer Kit"


def test_this_machine(tmp_path: Path) -> None:
    hw = detect_hardware(device_tree=tmp_path / "absent")
    assert "board" not in hw.extra
    assert ("CUDAExecutionProvider" in hw.extra["onnxruntime_providers"]) == hw.cuda
    if Path("/proc/cpuinfo").exists():
        assert hw.cpu_features
