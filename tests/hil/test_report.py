"""The report from a small result set: Markdown verdicts, JSON that loads back, JUnit XML that parses with the
right counts, and PNG plots that are real images of the data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg

from hil.report import write_report
from hil.results import Row, RunReport
from hil.stream_outage import judge
from tests.hil.test_stream_outage import GONE, PHASES, STREAMS, healthy


def small_report() -> RunReport:
    report = RunReport(started_at="2026-01-01T00:00:00+00:00", machine="test", package="digits", package_bytes=1000)
    outage = Row(scenario="broker_outage", variant="fp32", target="netns", figures={"lost": 0, "sent": 40})
    outage.series["delivered"] = [[float(t), float(i + 1)] for i, t in enumerate(range(60, 80))]
    outage.series["produced"] = [[float(t), float(i + 1)] for i, t in enumerate(range(0, 80, 4))]
    outage.series["outage"] = [[0.0, 0.0], [60.0, 0.0]]
    outage.check("zero_telemetry_lost", True, "sent 40, delivered 40")
    swap = Row(scenario="hot_swap", variant="int8", target="ssh", figures={"frames_lost": 1, "longest_gap_ms": 90})
    swap.series["frame_interval_ms"] = [[t / 10, 33.0 if t != 0 else 90.0] for t in range(-20, 20)]
    swap.check("zero_swap_frames_lost", False, "1 frame indices missing")
    lat = Row(scenario="latency_cdf", variant="fp32", target="netns",
              figures={"infer_p50_le_ms|clean": 0.5, "infer_p99_le_ms|clean": 2.5})
    lat.series["infer|clean"] = [[0.25, 0.1], [0.5, 0.6], [2.5, 1.0]]
    lat.series["infer|1 Mbit/s"] = [[0.25, 0.05], [0.5, 0.5], [2.5, 1.0]]
    broken = Row(scenario="camera_gone", variant="fp32", target="ssh", status="error", error="HilError: boom")
    na = Row(scenario="first_deploy", variant="fp16", target="netns", status="n/a", error="needs CUDA")
    report.rows = [outage, swap, lat, broken, na]
    return report


def test_report_files_plots_and_junit(tmp_path: Path) -> None:
    files = write_report(small_report(), tmp_path)
    names = sorted(p.name for p in files)
    assert names == sorted(["results.json", "junit.xml", "report.md", "drain-netns-fp32.png", "swap-ssh-int8.png",
                            "latency-cdf-netns-fp32.png"])
    for png in tmp_path.glob("*.png"):
        image = mpimg.imread(png)  # decodes: a real PNG
        assert image.shape[0] > 200 and image.shape[1] > 300, png
        assert image[..., :3].std() > 0.01, f"{png} is blank"

    suites = {s.get("name"): s for s in ET.parse(tmp_path / "junit.xml").getroot()}
    assert set(suites) == {"hil.netns", "hil.ssh"}
    ssh = suites["hil.ssh"]
    assert (ssh.get("tests"), ssh.get("failures"), ssh.get("errors")) == ("2", "1", "1")
    assert suites["hil.netns"].get("skipped") == "1"
    failure = ssh.find("testcase[@classname='hil.ssh.hot_swap']/failure")
    assert failure is not None and "zero_swap_frames_lost" in (failure.get("message") or "")

    md = (tmp_path / "report.md").read_text()
    assert "| zero telemetry lost | **met** |" in md
    assert "| zero frames lost in a swap | **NOT met** | hot_swap/int8/ssh: 1 frame indices missing |" in md
    assert "| 20/20 restarts serve a verified model | not measured |" in md
    assert "![drain-netns-fp32.png](drain-netns-fp32.png)" in md
    assert "camera_gone/fp32/ssh: error: HilError: boom" in md
    assert RunReport.model_validate_json((tmp_path / "results.json").read_text()) == small_report()


def test_a_camera_outage_row_gets_its_per_stream_table_and_plot(tmp_path: Path) -> None:
    evs, tel = healthy(others_during=8.0)
    verdict = judge(evs, tel, STREAMS, GONE, PHASES)
    row = Row(scenario="multi_camera_gone", variant="fp32", target="netns",
              figures={"cameras": 3, "gone_stream": GONE, **verdict.figures}, series=verdict.series)
    report = RunReport(started_at="2026-01-01T00:00:00+00:00", machine="test", package="digits", package_bytes=1000,
                       rows=[row])
    files = write_report(report, tmp_path)
    assert "cameras-netns-fp32.png" in [p.name for p in files]
    image = mpimg.imread(tmp_path / "cameras-netns-fp32.png")
    assert image.shape[0] > 200 and image[..., :3].std() > 0.01
    md = (tmp_path / "report.md").read_text()
    assert "## One camera gone among several" in md
    assert "| fp32 | netns | **cam1 (gone)** | 10 | 0 | 10 | 0 | 10 / 0 | 13 | 0 |" in md
    assert "| fp32 | netns | cam0 | 10 | 8 | 10 | 0.8 | 10 / 10 | 0 | 1 |" in md
