"""bench-streams reads the load average once at the start and once at the end, reports those readings everywhere
(machine line, uptime lines, JSON) and records them as every bench that feeds edge.md does (load_at_start/_end)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import bench_streams
from bench.edge_targets import section

FIG = {"agent_fps": 90.0, "ceiling_fps": 100.0, "agent_frames": 400, "serving": "batched", "batch_size": 4,
       "batched_frames": 380, "bare_batched_fps": 120.0, "decode4_fps": 100.0, "shared_ceiling_fps": 55.0,
       "agent_cpu_ms": 9.0, "bare_cpu_ms": 4.0, "decode4_cpu_ms": 5.0}


def paced(*_: object, stall: bool) -> dict[str, float]:
    return {n: 40.0 if stall else 35.0 for n in bench_streams.CAMERAS} | {
        f"{n}_frames": 60.0 for n in bench_streams.CAMERAS}


class Store:
    def __init__(self, _: Path) -> None:
        pass

    def exists(self, _: str) -> bool:
        return True

    def get(self, _: str) -> bytes:
        return b"{}"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every os.getloadavg() call returns a different load (1.00, 2.00, ...); the list counts the calls."""
    calls: list[int] = []

    def getloadavg() -> tuple[float, float, float]:
        calls.append(1)
        n = float(len(calls))
        return (n, n, n)

    monkeypatch.setattr(os, "getloadavg", getloadavg)
    yield calls


def run_bench(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
    """bench_streams.main with its measurements replaced by fixed figures (no agent, broker or model)."""
    monkeypatch.setattr(bench_streams, "LocalStore", Store)
    monkeypatch.setattr(bench_streams, "parse_latest", lambda _: SimpleNamespace(version=3))
    monkeypatch.setattr(bench_streams, "make_video", lambda *_: [])
    monkeypatch.setattr(bench_streams, "start_broker", lambda _: (None, None))
    monkeypatch.setattr(bench_streams, "throughput", lambda *_: FIG)
    monkeypatch.setattr(bench_streams, "paced", paced)
    monkeypatch.setattr(bench_streams, "rss", lambda *a: 100.0 * a[-1])
    monkeypatch.setattr(sys, "argv", ["bench_streams", "--quick", "--out", str(out)])
    bench_streams.main()


def test_the_load_is_read_once_at_the_start_and_once_at_the_end_and_shown_as_read(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loads: list[int]) -> None:
    run_bench(monkeypatch, tmp_path)
    assert len(loads) == 2
    doc = json.loads((tmp_path / "streams.json").read_text())
    assert doc["load_at_start"] == doc["machine"]["load"] == [1.0, 1.0, 1.0]
    assert doc["load_at_end"] == [2.0, 2.0, 2.0]
    text = (tmp_path / "streams.md").read_text()
    assert "load average 1.00/1.00/1.00 (1/5/15 min) at the start" in text
    assert "load average: 1.00, 1.00, 1.00` before" in text and "load average: 2.00, 2.00, 2.00` after" in text
    assert "3.00" not in text


def test_edge_md_reads_the_load_the_streams_bench_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          loads: list[int]) -> None:
    run_bench(monkeypatch, tmp_path)
    text = section(tmp_path)
    streams = text.split("Four cameras through one agent")[1]
    assert "Load average (1/5/15 min) at the start: 1.00/1.00/1.00." in streams
    assert "RSS 4 streams 400 MiB vs 1 stream 100 MiB = 4.00x (target <= 1.3x): NOT met" in streams


def test_the_committed_results_edge_md_reads_say_their_load() -> None:
    results = Path(bench_streams.RESULTS)
    for name in ("latency-bench.json", "streams.json"):
        doc: dict[str, Any] = json.loads((results / name).read_text())
        assert len(doc["load_at_start"]) == 3 and len(doc["load_at_end"]) == 3, name
    assert "not recorded" not in section(results)
