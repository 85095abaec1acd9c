"""System figures: known ones reported, unknown ones omitted (never NaN)."""

from __future__ import annotations

import math
from pathlib import Path

from edge.system_stats import SystemStats, parse_tegrastats, read_gpu_load, read_thermal_zones


def test_hottest_thermal_zone_in_celsius(tmp_path: Path) -> None:
    for i, milli in enumerate(("41500", "67250", "garbage")):
        (tmp_path / f"thermal_zone{i}").mkdir()
        (tmp_path / f"thermal_zone{i}" / "temp").write_text(milli + "\n")
    assert read_thermal_zones(tmp_path) == 67.25
    assert read_thermal_zones(tmp_path / "none") is None


def test_jetson_gpu_load_is_per_mille(tmp_path: Path) -> None:
    load = tmp_path / "load"
    load.write_text("372\n")
    assert read_gpu_load([tmp_path / "missing", load]) == 37.2
    assert read_gpu_load([tmp_path / "missing"]) is None


def test_tegrastats_lines() -> None:
    line = ("RAM 2448/3956MB (lfb 5x2MB) SWAP 0/1978MB CPU [12%@1479,5%@1479,off,off] EMC_FREQ 0% "
            "GR3D_FREQ 37%@921 PLL@41C CPU@43.5C GPU@40C")
    assert parse_tegrastats(line) == 37.0
    assert parse_tegrastats("RAM 1/2MB GR3D 5%@76") == 5.0
    assert parse_tegrastats("RAM 1/2MB") is None


def test_sample_has_process_figures_and_omits_what_the_platform_lacks(tmp_path: Path) -> None:
    stats = SystemStats(thermal_root=tmp_path, gpu_load_paths=[], tegrastats=None)
    sum(i * i for i in range(200_000))  # some CPU work between samples
    values = stats.sample()
    assert values["rss_mb"] > 1
    assert values["cpu_pct"] >= 0
    assert "gpu_pct" not in values
    assert all(math.isfinite(v) for v in values.values())


def test_sample_reports_gpu_load_when_present(tmp_path: Path) -> None:
    load = tmp_path / "load"
    load.write_text("1000")
    assert SystemStats(gpu_load_paths=[load], tegrastats=None).sample()["gpu_pct"] == 100.0
