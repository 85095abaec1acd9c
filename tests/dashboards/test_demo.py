"""`make demo`'s launcher, run for a short while: the control plane sees the real agent and the simulated devices,
and when it ends every process it started has exited."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


def test_the_demo_shows_agent_and_simulated_devices_and_leaves_nothing_running(tmp_path: Path) -> None:
    # A fresh clone has no trained package: publish a small signed one as `make train-cloud` would.
    keys = new_keypair()
    make_package(LocalStore(tmp_path / "store"), "digits", 1, keys)
    pub = write_public_key(keys, tmp_path / "edgeferry.pub")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboards.demo", "--devices", "5", "--duration", "40", "--web-port", "0",
         "--state-dir", str(tmp_path / "demo"), "--store", str(tmp_path / "store"), "--trusted-key", str(pub)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    out: list[str] = []
    seen, metrics = 0.0, None
    for line in proc.stdout:
        out.append(line)
        if (m := re.search(r"Prometheus:\s+(http://\S+/metrics)", line)) is not None:
            metrics = m.group(1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and seen < 6:
                seen = online_devices(metrics)
                time.sleep(1)
    proc.wait(timeout=120)
    text = "".join(out)
    assert proc.returncode == 0, text
    assert metrics is not None and re.search(r"fleet page:\s+http://127\.0\.0\.1:\d+/\s+login demo / \S+", text), text
    assert seen >= 6, f"the control plane saw {seen} online devices, want the agent and 5 simulated ones\n{text}"
    pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)", text)]
    assert len(pids) == 4 and "everything stopped" in text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
