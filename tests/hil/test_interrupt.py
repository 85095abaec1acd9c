"""Ctrl-C or SIGTERM in the middle of a run (broker down, agent publishing) removes everything the run started:
namespaces, broker, S3 endpoint, agent; and the report of what finished is still written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.netns import list_namespaces

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]


def _ps() -> str:
    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_removes_everything(sig: signal.Signals, tmp_path: Path) -> None:
    before = list_namespaces()
    out = tmp_path / "out"
    # Ctrl-C reaches a run started from a terminal; a suite started in the background (`cmd &` in a script) hands
    # its children SIGINT ignored, so the run gets the terminal's default back, as a user's would have.
    proc = subprocess.Popen([sys.executable, "-m", "edgeferry.cli", "hil", "run", "--scenario", "broker_outage",
                             "--variants", "fp32", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "broker-outage-0/agent.yaml" not in _ps():
            time.sleep(0.2)
        assert "broker-outage-0/agent.yaml" in _ps(), "the agent never started"
        ours = list_namespaces() - before
        assert any(n.startswith("ef-cloud-") for n in ours) and any(n.startswith("ef-dev-") for n in ours)
        time.sleep(4)  # the broker is down now: the interrupt lands mid-outage
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed assertion above: still let the harness clean up after itself
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted; everything it started was removed" in stdout
    assert not ours & list_namespaces()
    left = _ps()
    assert "broker-outage-0/agent.yaml" not in left and "edgeferry-hil-netns" not in left
    assert (out / "report.md").is_file()
