"""edge.md ends with the issue-16 verdicts of the latency and streams benches, once, however often it is rerun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.edge_targets import HEADING

ROOT = Path(__file__).resolve().parents[2]


def run(results: Path) -> str:
    subprocess.run([sys.executable, "-m", "bench.edge_targets", "--results", str(results)], check=True, cwd=ROOT,
                   capture_output=True)
    return (results / "edge.md").read_text()


def test_the_targets_of_both_benches_land_once_at_the_end_of_edge_md(tmp_path: Path) -> None:
    (tmp_path / "edge.md").write_text("# bench-edge\n\n| table |\n")
    (tmp_path / "latency-bench.json").write_text(json.dumps({
        "load_at_start": [0.3, 0.5, 0.7],
        "verdicts": ["digits, 1 thread(s): e2e p50 = bare + 1.0 ms (target <= +0.15 ms: NOT met)", "a note"]}))
    (tmp_path / "streams.json").write_text(json.dumps({
        "load_at_start": [1.2, 1.0, 0.9],
        "verdicts": ["RSS 4 streams vs 1 = 1.1x (target <= 1.3x): met"]}))
    first = run(tmp_path)
    again = run(tmp_path)
    assert again == first and again.count(HEADING) == 1 and again.startswith("# bench-edge\n\n| table |\n")
    assert "(target <= +0.15 ms: NOT met)" in again and "(target <= 1.3x): met" in again
    assert "a note" not in again  # only target verdicts
    assert "0.30/0.50/0.70" in again and "1.20/1.00/0.90" in again


def test_a_bench_that_did_not_run_is_said_not_measured(tmp_path: Path) -> None:
    (tmp_path / "edge.md").write_text("# bench-edge\n")
    text = run(tmp_path)
    assert "not measured: latency-bench.json" in text and "not measured: streams.json" in text
