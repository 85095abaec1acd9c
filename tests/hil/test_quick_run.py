"""The quick subset `make test` runs: `edgeferry hil run --quick` on the netns target, as a user runs it, writes
a passing report with its plots, and leaves no namespace, mount or process behind."""

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


def test_quick_scenarios_pass_and_leave_nothing_behind(tmp_path: Path) -> None:
    before_ns = list_namespaces()
    before_mounts = Path("/proc/mounts").read_text()
    out = tmp_path / "hil-results"
    done = subprocess.run([sys.executable, "-m", "edgeferry.cli", "hil", "run", "--quick", "--variants", "fp32",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = {r["scenario"]: r for r in report["rows"]}
    assert set(rows) == {"first_deploy", "disk_full", "hot_swap"}
    assert all(r["status"] == "pass" for r in rows.values()), rows
    assert 0 < rows["first_deploy"]["figures"]["publish_to_serving_s"] < 60
    assert rows["hot_swap"]["figures"]["frames_lost"] == 0
    assert rows["disk_full"]["figures"]["frames_on_old_model_while_full"] > 0
    assert "target zero frames lost in a swap: met" in done.stdout
    cases = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert len(cases) == 3 and not any(c.find("failure") is not None for c in cases)
    assert mpimg.imread(out / "swap-netns-fp32.png").shape[0] > 200
    assert list((out / "logs" / "netns").rglob("agent.log"))
    assert not list_namespaces() - before_ns
    assert Path("/proc/mounts").read_text() == before_mounts
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "edgeferry-hil-netns" not in ps and "mjpeg_camera" not in ps
