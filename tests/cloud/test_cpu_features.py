"""CPU flag parsing from /proc/cpuinfo text of x86 and ARM machines."""

from __future__ import annotations

from pathlib import Path

from cloud.cpu_features import CpuInfo, detect_cpu, parse_cpu_flags

X86_NO_VNNI = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2
"""
X86_VNNI = "processor : 0\nflags : sse2 avx2 avx512f avx512bw avx512vl avx512_vnni\n"
ARM = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp\n"


def test_x86_flags_line_is_parsed() -> None:
    flags = parse_cpu_flags(X86_NO_VNNI)
    assert {"avx2", "fma", "sse2"} <= flags
    assert "vendor_id" not in flags and "bugs" not in flags


def test_arm_features_line_is_parsed() -> None:
    assert {"asimd", "asimddp"} <= parse_cpu_flags(ARM)


def test_no_flags_line_gives_no_flags() -> None:
    assert parse_cpu_flags("processor : 0\nmodel name : mystery\n") == frozenset()


def test_vnni_and_architecture() -> None:
    no_vnni = CpuInfo("x86_64", parse_cpu_flags(X86_NO_VNNI))
    vnni = CpuInfo("x86_64", parse_cpu_flags(X86_VNNI))
    arm = CpuInfo("aarch64", parse_cpu_flags(ARM))
    assert no_vnni.is_x86 and not no_vnni.vnni
    assert vnni.is_x86 and vnni.vnni
    assert arm.is_arm and not arm.is_x86


def test_recorded_features_are_the_relevant_sorted_subset() -> None:
    cpu = CpuInfo("x86_64", parse_cpu_flags(X86_VNNI))
    assert cpu.recorded_features() == ["avx2", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "sse2"]


def test_unreadable_cpuinfo_means_unknown_flags(tmp_path: Path) -> None:
    cpu = detect_cpu(tmp_path / "missing", machine="x86_64")
    assert cpu.flags == frozenset() and cpu.machine == "x86_64"


def test_detect_reads_the_given_file(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(X86_VNNI)
    assert detect_cpu(path, machine="x86_64").vnni
