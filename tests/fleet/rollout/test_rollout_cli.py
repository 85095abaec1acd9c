"""`edgeferry fleet rollout ...` as an operator runs it: bad input is one line, exit 1 and no rollout stored;
start, status, pause, resume, promote, abort and history show what the database holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.db.store import FleetStore
from fleet.rollout.store import RolloutRepository
from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.integration.agent_harness import write_public_key

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))


class Operator:
    """A fleet config on disk, a store with tiny v1-v3 (v3 corrupt), and devices cam-0..cam-9 of group north
    (named in their own state and assigned here)."""

    def __init__(self, tmp: Path) -> None:
        keys = new_keypair()
        pkg = LocalStore(tmp / "store")
        make_package(pkg, "tiny", 1, keys)
        make_package(pkg, "tiny", 2, keys, latest=False)
        make_package(pkg, "tiny", 3, keys, latest=False, corrupt="model.fp32.onnx")
        url = f"sqlite:///{tmp}/fleet.sqlite"
        self.tmp = tmp
        self.conf = tmp / "fleet.yaml"
        self.conf.write_text(yaml.safe_dump({
            "fleet": "it", "database": {"url": url},
            "packages": {"store": {"uri": str(pkg.root)},
                         "trusted_keys": [str(write_public_key(keys, tmp / "pkg.pub"))]},
        }))
        self.store = FleetStore.open(url, "it")
        now = int(time.time() * 1000)
        for i in range(10):
            self.store.devices.update(f"cam-{i}", lambda r: replace(
                r, reported_status="online", last_seen_ms=now, reported_groups=("north",), groups=("north",),
                model_name="tiny", model_version=1, telemetry_interval_s=60.0,
            ))
            self.store.devices.assign(f"cam-{i}", "north", now)  # rollouts draw cohorts from assignments
        self.repo = RolloutRepository(self.store.engine, "it")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EDGEFERRY, "fleet", "rollout", *args, "--config", str(self.conf)],
                              capture_output=True, text=True, timeout=120)

    def ok(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture
def op(tmp_path: Path) -> Any:
    o = Operator(tmp_path)
    yield o
    o.store.close()


def _error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "plan", "message"), [
    (["--model", "nope", "--model-version", "1"], None, r"nope v1 in .* does not exist"),
    (["--model", "tiny", "--model-version", "9"], None, r"tiny v9 in .* does not exist"),
    (["--model", "tiny", "--model-version", "3"], None, r"tiny v3 in .* fails verification"),
    (["--model", "tiny", "--model-version", "2", "--group", "south"], None, r"group 'south' .* has no devices"),
    (["--model", "../x", "--model-version", "2"], None, r"invalid model name"),
    (["--model", "tiny", "--model-version", "2"], "stages: [{name: a, percent: 10, gates: [{metric: nope, op: '<=', "
     "threshold: 1}]}, {name: b, percent: 100}]", r"stages\.0\.gates\.0\.metric: metric 'nope' is not declared"),
    (["--model", "tiny", "--model-version", "2"], "stages: [{name: a, percent: 10, gates: [{metric: fps, op: '=>', "
     "threshold: 1}]}, {name: b, percent: 100}]", r"stages\.0\.gates\.0\.op: Input should be"),
    (["--model", "tiny", "--model-version", "2"], "stages: [{name: a, percent: 60}, {name: b, percent: 30}]",
     r"stage shares must increase"),
])
def test_bad_start_is_one_line_and_stores_nothing(op: Operator, args: list[str], plan: str | None,
                                                  message: str) -> None:
    extra = []
    if plan is not None:
        (op.tmp / "plan.yaml").write_text(plan + "\n")
        extra = ["--plan", str(op.tmp / "plan.yaml")]
    if "--group" not in args:
        args = [*args, "--group", "north"]
    line = _error_line(op.run("start", *args, *extra))
    assert re.search(message, line), line
    assert op.repo.latest() == []


def test_start_status_pause_resume_promote_abort_history(op: Operator) -> None:
    out = op.ok("start", "--model", "tiny", "--model-version", "2", "--group", "north")
    assert "tiny v2 to group north, running, stage 1/3 canary (10 %)" in out
    rid = op.repo.latest()[0].id
    second = _error_line(op.run("start", "--model", "tiny", "--model-version", "2", "--group", "north"))
    assert f"group 'north' of fleet 'it' already has a rollout running ({rid}" in second
    assert len(op.repo.latest()) == 1

    status = json.loads(op.ok("status", "north", "--output", "json"))
    assert (status["id"], status["state"], status["stage"]["name"]) == (rid, "running", "canary")
    assert op.ok("pause", rid, "--reason", "night freeze").startswith("pause: rollout")
    assert "cannot pause rollout" in _error_line(op.run("pause", rid))
    op.ok("resume", rid)
    op.ok("promote", "north")
    assert json.loads(op.ok("status", "--output", "json"))["stage"]["name"] == "half"
    text = op.ok("status")
    assert "stage 2/3 half (50 %)" in text and "last decision" in text
    op.ok("abort", rid)
    assert json.loads(op.ok("status", rid, "--output", "json"))["state"] == "aborted"
    hist = op.ok("history", rid)
    kinds = [line.split()[2] for line in hist.splitlines()[1:] if line[:2] == "20"]
    assert kinds == ["start", "pause", "resume", "promote", "abort"]
    assert "night freeze" in hist
    assert "no rollout 'ro-nope'" in _error_line(op.run("status", "ro-nope"))
