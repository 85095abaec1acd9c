"""`make demo`'s launcher, run for a short while: the control plane sees the real agent and the simulated devices,
and when it ends every process it started has exited."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dashboards.demo import DEMO_AGENT_CONFIG, DEMO_PASSWORD, DEMO_USER, Demo
from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.integration.agent_harness import write_public_key

pytestmark = pytest.mark.slow


def online_devices(url: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "edgeferry_fleet_devices" and s.labels.get("status") == "online":
                return s.value
    return 0.0


def detector_seen(web: str) -> tuple[list[Any], dict[str, Any]]:
    """(object events, zone counts) of the first simulated detector, read from the demo's web app as a user would."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = urllib.parse.urlencode({"username": DEMO_USER, "password": DEMO_PASSWORD}).encode()
    try:
        opener.open(f"{web}login", form, timeout=5)
        events = json.loads(opener.open(f"{web}api/devices/sim-0000/objects/events", timeout=5).read())
        zones = json.loads(opener.open(f"{web}api/devices/sim-0000/objects/zones", timeout=5).read())
    except OSError:
        return [], {}
    return events, zones


def test_the_demo_shows_agent_and_simulated_devices_and_leaves_nothing_running(tmp_path: Path) -> None:
    # A fresh clone has no trained package: publish a small signed one as `make train-cloud` would.
    keys = new_keypair()
    make_package(LocalStore(tmp_path / "store"), "digits", 1, keys)
    pub = write_public_key(keys, tmp_path / "edgeferry.pub")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboards.demo", "--devices", "5", "--duration", "60", "--web-port", "0",
         "--state-dir", str(tmp_path / "demo"), "--store", str(tmp_path / "store"), "--trusted-key", str(pub)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    out: list[str] = []
    seen, metrics = 0.0, None
    detector: tuple[list[Any], dict[str, Any]] = ([], {})
    for line in proc.stdout:
        out.append(line)
        if (m := re.search(r"Prometheus:\s+(http://\S+/metrics)", line)) is not None:
            metrics = m.group(1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and seen < 6:
                seen = online_devices(metrics)
                time.sleep(1)
            web = re.findall(r"fleet page:\s+(http://\S+/)", "".join(out))[0]
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline and not (detector[0] and detector[1].get("ts_ms")):
                detector = detector_seen(web)
                time.sleep(1)
    proc.wait(timeout=120)
    text = "".join(out)
    assert proc.returncode == 0, text
    assert metrics is not None and re.search(r"fleet page:\s+http://127\.0\.0\.1:\d+/\s+login demo / \S+", text), text
    assert seen >= 6, f"the control plane saw {seen} online devices, want the agent and 5 simulated ones\n{text}"
    events, zones = detector
    assert events and {e["label"] for e in events} <= {"person", "car"}, f"no object events from sim-0000\n{text}"
    assert {"driveway", "door"} <= set(zones["series"]), zones
    pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)", text)]
    assert len(pids) == 4 and "everything stopped" in text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def resolved_agent_config(args: list[str]) -> dict[str, Any]:
    """What the agent the demo starts would run with: the real CLI's resolution of its arguments."""
    proc = subprocess.run([sys.executable, "-m", "edgeferry.cli", "agent", *args, "--print-config"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")})
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_without_duration_the_demo_agent_runs_until_stopped_though_its_file_says_20_s(tmp_path: Path) -> None:
    demo = Demo(tmp_path, tmp_path / "store", 1, 0, tmp_path / "edgeferry.pub")
    assert yaml.safe_load(DEMO_AGENT_CONFIG.read_text())["run"]["duration_s"] == 20
    forever = resolved_agent_config(demo.agent_args(tmp_path / "fleet.pub", None))
    assert forever["run"]["duration_s"] is None
    assert (forever["mqtt"]["host"], forever["mqtt"]["port"]) == ("127.0.0.1", demo.broker_port)
    assert resolved_agent_config(demo.agent_args(tmp_path / "fleet.pub", 30))["run"]["duration_s"] == 90


def test_make_demo_runs_until_ctrl_c_and_then_stops_everything(tmp_path: Path) -> None:
    keys = new_keypair()
    make_package(LocalStore(tmp_path / "store"), "digits", 1, keys)
    pub = write_public_key(keys, tmp_path / "edgeferry.pub")
    proc = subprocess.Popen(  # no --duration, as `make demo` runs it
        [sys.executable, "-m", "dashboards.demo", "--devices", "2", "--web-port", "0",
         "--state-dir", str(tmp_path / "demo"), "--store", str(tmp_path / "store"), "--trusted-key", str(pub)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    out: list[str] = []
    for line in proc.stdout:
        out.append(line)
        if "Ctrl-C stops everything" in line:
            break
    text = "".join(out)
    pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)", text)]
    assert proc.poll() is None and len(pids) == 4, text
    for pid in pids:
        os.kill(pid, 0)  # every child still runs
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    text += rest
    assert proc.returncode == 0 and "everything stopped" in text and "exited with" not in text, text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
