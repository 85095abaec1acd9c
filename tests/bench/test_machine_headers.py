"""Every benchmark's results file names the machine the same way (bench.machine): the CPU, its instruction-set flags
of note, the cores, memory and the load average; a reader compares figures across files only if their headers say
the same things."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from bench import bench_dashboard, bench_fleet, bench_latency, bench_outbox
from bench.bench_edge import Row
from bench.machine import FLAGS, load1, machine, machine_line, uptime

BOX = {"cpu": "Test CPU 9000", "flags": ["avx2"], "cores": 2, "load": [1.5, 1.0, 0.5], "memory_gib": 7.8}


def test_the_machine_line_names_cpu_flags_absent_flags_cores_memory_and_load() -> None:
    line = machine_line(BOX)
    assert line.startswith("CPU: Test CPU 9000; flags: avx2 (absent: ")
    assert all(f in line for f in FLAGS)  # the present one and every absent one are named
    assert "2 cores, 7.8 GiB" in line and "load average 1.50/1.00/0.50" in line
    here = machine()
    assert here["cores"] >= 1 and here["memory_gib"] > 0 and len(here["load"]) == 3


def test_the_dashboard_bench_writes_the_shared_machine_line() -> None:
    case = {"devices": 200, "rate_hz": 1.0, "total_shown": 200, "first_load_s": 0.4, "target_s": 1.0,
            "load_met": True, "reload_s": 0.3, "summary_ms": 5.0, "page_ms": 6.0, "tick_s": 1.0,
            "main_thread_pct": 3.0, "chromium_pct": 9.0, "loadavg_before": 1.2, "measured_at": "2026-12-07T20:00",
            "met": True, "interval_s": 1.0, "measure_s": 10.0}
    text = bench_dashboard.report([case], BOX)
    assert machine_line(BOX, when="at the start") in text.splitlines()


def test_the_latency_bench_writes_the_shared_machine_line_and_keeps_it_in_its_json(tmp_path: Path) -> None:
    args = argparse.Namespace(frames=60, fps=30.0, quick=True, out=tmp_path)
    rows = [Row("digits", 1, "bare run (chosen), unpaced", 0.1, 0.2, 900.0, cpu_ms=0.1, note="preprocessed inputs"),
            Row("digits", 1, "decode + preprocess alone", 0.3, 0.4, 500.0, note="640x480 MJPG")]
    bench_latency.write(rows, [], [], args, (1.5, 1.0, 0.5))
    text = (tmp_path / "latency-bench.md").read_text()
    host = machine()
    assert f"CPU: {host['cpu']}; flags: " in text and "load average 1.50/1.00/0.50 (1/5/15 min) at the start" in text
    assert "| digits | 1 | bare run (chosen), unpaced | 0.100 | 0.200 | 900.0 | 0.100 | preprocessed inputs |" in text
    assert "| digits | 1 | decode + preprocess alone | 0.300 | 0.400 | 500.0 | nan | 640x480 MJPG |" in text
    doc = json.loads((tmp_path / "latency-bench.json").read_text())
    assert doc["cpu"] == host["cpu"] and doc["flags"] == host["flags"] and doc["rows"][0]["cpu_ms"] == 0.1


def test_the_outbox_bench_prints_the_machine_line_above_its_rows(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_outbox", "--messages", "64"])
    bench_outbox.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"CPU: {machine()['cpu']}; flags: ") and lines[1].startswith("synchronous")


def test_the_fleet_bench_writes_the_recorded_machine_line_and_its_open_files_limit() -> None:
    outcome = bench_fleet.Outcome("fleet", "sqlite", 1, 1000, 1000.0, 990.0, 0.5, 1.5, 1.0, 250.0, 60.0, 20.0, 10.0,
                                  200.0, 8000, 8000, 8000, (1.5, 1.0, 0.5))
    text = bench_fleet.report([outcome], True, [], {**BOX, "nofile_hard": 1048576})
    assert f"{machine_line(BOX)}; open files limit 1048576" in text.splitlines()
    here = bench_fleet.fleet_machine()
    assert here["cpu"] == machine()["cpu"] and here["nofile_hard"] > 0


def test_a_results_file_from_before_flags_were_recorded_still_renders() -> None:
    old = {"cpu": "Old CPU", "cores": 2, "memory_gib": 7.8, "platform": "Linux"}
    assert machine_line(old) == "CPU: Old CPU; flags not recorded; 2 cores, 7.8 GiB"


def test_the_machine_line_says_when_its_load_was_read() -> None:
    assert machine_line(BOX).endswith("load average 1.50/1.00/0.50 (1/5/15 min) when measured")
    assert machine_line(BOX, when="at the start").endswith("load average 1.50/1.00/0.50 (1/5/15 min) at the start")


def test_the_load_a_bench_records_beside_its_figures_is_the_load_average() -> None:
    line = uptime()
    assert " UTC load average: " in line and len(line.rsplit(": ", 1)[1].split(", ")) == 3
    assert load1() >= 0.0
