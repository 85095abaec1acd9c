"""`edgeferry hil run --scenario multi_camera_gone`, as a user runs it: one real agent serves four MJPEG cameras over
the lab's broker, one camera is unplugged and plugged back in, and the report shows what an operator would see: the
other cameras kept their rate, the gone one stalled and said so in its telemetry, then came back."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from hil.netns import list_namespaces

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]


def test_one_camera_gone_among_four_stalls_alone_and_comes_back(tmp_path: Path) -> None:
    before_ns = list_namespaces()
    out = tmp_path / "hil-results"
    done = subprocess.run([sys.executable, "-m", "edgeferry.cli", "hil", "run", "--scenario", "multi_camera_gone",
                           "--variants", "fp32", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["scenario"] == "multi_camera_gone" and row["status"] == "pass", row
    f = row["figures"]
    gone = f["gone_stream"]
    others = [f"cam{i}" for i in range(4) if f"cam{i}" != gone]
    assert len(others) == 3
    # Every camera produced results before; the others went on at (generously) their rate while one was gone.
    assert all(f[f"rate_before|{s}"] > 0 for s in [*others, gone])
    assert all(f[f"rate_gone|{s}"] >= 0.5 * f[f"rate_before|{s}"] for s in others), f
    assert all(f[f"source_errors_added|{s}"] == 0 for s in others)
    # The gone camera made no results while unplugged, its telemetry said disconnected, and it came back.
    assert f["gone_results_while_gone"] == 0
    assert f[f"connected_min_gone|{gone}"] == 0 and f[f"source_errors_added|{gone}"] > 0
    assert f["reconnect_s"] is not None and f[f"rate_after|{gone}"] > 0
    assert {c["name"] for c in row["checks"]} >= {"others_kept_rate", "gone_stream_stalled", "gone_stream_reported",
                                                  "gone_stream_resumed"}
    md = (out / "report.md").read_text()
    assert f"**{gone} (gone)**" in md and "## One camera gone among several" in md
    assert mpimg.imread(out / "cameras-netns-fp32.png").shape[0] > 200
    (case,) = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert case.get("classname") == "hil.netns.multi_camera_gone" and case.find("failure") is None
    assert not list_namespaces() - before_ns
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "mjpeg_camera" not in ps and "edgeferry-hil-netns" not in ps
