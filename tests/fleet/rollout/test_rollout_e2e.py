"""Rollouts end to end: real Mosquitto, the real `edgeferry fleet serve` process, the simulator's devices, and the
operator's CLI. A good version reaches the whole group, a slow or unconfident one is rolled back on its gate, and
kill -9 of the control plane mid-stage resumes the same rollout without repeating or skipping a stage. One lying
device (it names the group in its own state and reads its own desired topic) moves no verdict either way.

Devices name group north in their own state, and `ready()` assigns them to it in the control plane as an operator
does: rollouts draw their cohorts from assignments unless `controller.trust_device_groups` is on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.control import assign_group
from fleet.db.store import FleetStore
from fleet.sim.runner import SimOptions, Simulation, ThreadedSimulation
from shared.object_store import LocalStore
from shared.signing import key_id
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker
from tests.fleet.helpers import eventually, fleet_tree, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, write_public_key

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
COMMON = {"soak_s": 3, "analysis_interval_s": 0.5, "window_s": 5, "device_deadline_s": 15, "deadline_s": 120}
GATES = [
    {"kind": "restarts"},
    {"metric": "e2e_ms_p95", "op": "<=", "threshold": 1.5, "compare": "ratio_to_control"},
    {"metric": "conf_mean", "op": ">=", "threshold": -0.1, "compare": "difference_to_control"},
    {"metric": "low_conf_share", "op": "<=", "threshold": 0.1, "compare": "difference_to_control"},
]
PLAN = {"stages": [{"name": n, "percent": p, "gates": GATES, **COMMON}
                   for n, p in (("canary", 10), ("half", 50), ("all", 100))]}
# The class-mix gate too, for the liar that floods class counts. Simulated devices report 5 results per message
# over four classes; 0.5 keeps honest noise at 30+ results far from failing, and 4e12 fake results far above it.
LIAR_GATES = [*GATES, {"kind": "psi", "max_psi": 0.5, "min_results": 30}]
LIAR_PLAN = {"stages": [{"name": n, "percent": p, "gates": LIAR_GATES, **COMMON}
                        for n, p in (("canary", 10), ("half", 50), ("all", 100))]}


class ControlPlane:
    """A fleet config, the package store (digits v1, v2), a `fleet serve` process and simulated devices."""

    def __init__(self, tmp: Path, broker: Broker, model: str = "tiny", trust_device_groups: bool = False) -> None:
        keys = new_keypair()
        self.pkg = LocalStore(tmp / "store")
        make_package(self.pkg, model, 1, keys)
        make_package(self.pkg, model, 2, keys, latest=False)
        self.pkg_pub = write_public_key(keys, tmp / "pkg.pub")
        self.tmp, self.broker, self.model = tmp, broker, model
        self.url = f"sqlite:///{tmp}/fleet.sqlite"
        self.conf = tmp / "fleet.yaml"
        self.conf.write_text(yaml.safe_dump(fleet_tree(broker, self.url, **{
            "commands.key": str(write_private_key(COMMAND_KEY, tmp / "fleet.key")),
            "packages.store.uri": str(self.pkg.root), "packages.trusted_keys": [str(self.pkg_pub)],
            "controller.trust_device_groups": trust_device_groups,
        })))
        (tmp / "plan.yaml").write_text(yaml.safe_dump(PLAN))
        (tmp / "liar-plan.yaml").write_text(yaml.safe_dump(LIAR_PLAN))
        self.serve: subprocess.Popen[bytes] | None = None
        self.sims: list[ThreadedSimulation] = []
        self.store: FleetStore | None = None

    def start_serve(self) -> None:
        log = open(self.tmp / "serve.log", "ab")  # noqa: SIM115 - the child process owns it
        self.serve = subprocess.Popen([EDGEFERRY, "fleet", "serve", "--config", str(self.conf)],
                                      stdout=subprocess.DEVNULL, stderr=log)
        log.close()

    def kill_serve(self) -> None:
        assert self.serve is not None
        self.serve.send_signal(signal.SIGKILL)
        self.serve.wait(10)

    def simulate(self, devices: int, behaviours: str = "good=1", prefix: str = "sim") -> Simulation:
        sim = ThreadedSimulation(SimOptions(
            devices=devices, host=self.broker.host, port=self.broker.port, fleet="it", groups=["north"],
            rate_hz=2.0, behaviours=behaviours, trusted={key_id(COMMAND_KEY.public_key()): COMMAND_KEY.public_key()},
            model=self.model, version=1, install_s=0.2, keepalive_s=5, labels=["0", "1", "2", "3"], prefix=prefix,
        ))
        self.sims.append(sim)
        return sim.start()

    def start_rollout(self, plan: Path | None = None) -> None:
        self.cli("start", "--model", self.model, "--model-version", "2", "--group", "north", "--plan",
                 str(plan or self.tmp / "plan.yaml"))

    def finished(self, timeout: float = 120) -> dict[str, Any]:
        return eventually(lambda: (s := self.status())["state"] != "running" and s, timeout, "the rollout to finish")

    def db(self) -> FleetStore:
        if self.store is None:
            self.store = FleetStore.open(self.url, "it")
        return self.store

    def cli(self, *args: str) -> str:
        out = subprocess.run([EDGEFERRY, "fleet", "rollout", *args, "--config", str(self.conf)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--output", "json")))

    def versions(self) -> dict[str, int | None]:
        """What each device assigned to north runs."""
        return {r.device_id: r.model_version for r in self.db().list_devices() if "north" in r.assigned_groups}

    def reporting(self, device_id: str) -> bool:
        """Online with a few telemetry samples (history for the baseline)."""
        now = int(time.time() * 1000)
        rec = self.db().devices.get(device_id)
        return rec is not None and rec.with_status_at(now).status == "online" and len(
            self.db().telemetry_window(device_id, now - 4000, now + 1)) >= 4

    def ready(self, n: int) -> None:
        """Every device of group north registered online with telemetry, then assigned to north here."""
        def all_reporting() -> bool:
            recs = self.db().list_devices(group="north")
            return len(recs) == n and all(self.reporting(r.device_id) for r in recs)
        eventually(all_reporting, 60, f"{n} simulated devices online with telemetry")
        for r in self.db().list_devices(group="north"):
            assign_group(self.db(), r.device_id, "north")

    def add_liar(self, behaviour: str) -> str:
        """One more device that names north in its own state and reads its own desired topic: never assigned."""
        self.simulate(1, f"{behaviour}=1", prefix="liar")
        liar = "liar-0000"
        eventually(lambda: self.reporting(liar), 60, "the liar online with telemetry")
        return liar

    def close(self) -> None:
        for sim in self.sims:
            sim.stop()
        if self.serve is not None and self.serve.poll() is None:
            self.serve.terminate()
            try:
                self.serve.wait(20)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait(10)
        if self.store is not None:
            self.store.close()

    def serve_log(self) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def plane(tmp_path: Path, mosquitto: Broker) -> Iterator[ControlPlane]:
    p = ControlPlane(tmp_path, mosquitto)
    try:
        yield p
    finally:
        p.close()


def _kinds(plane: ControlPlane) -> list[str]:
    return [e["kind"] for e in json.loads(plane.cli("history", "--output", "json")) if e["kind"] != "assign"]


def test_good_version_is_promoted_through_every_stage(plane: ControlPlane) -> None:
    plane.start_serve()
    plane.simulate(10)
    plane.ready(10)
    plane.start_rollout()
    st = plane.finished()
    assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
    assert _kinds(plane) == ["start", "advance", "advance", "complete"]
    eventually(lambda: set(plane.versions().values()) == {2}, 30, "every device on version 2")


@pytest.mark.parametrize(("behaviour", "gate"), [
    ("slow", "mean e2e_ms_p95 / control <= 1.5"),
    ("unconfident", "mean conf_mean - control >= -0.1"),
])
def test_bad_version_is_rolled_back_on_its_gate(plane: ControlPlane, behaviour: str, gate: str) -> None:
    plane.start_serve()
    plane.simulate(10, f"{behaviour}=1")
    plane.ready(10)
    plane.start_rollout()
    st = plane.finished()
    assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
    gates = {g["gate"]: g for g in st["gates"]}
    assert gates[gate]["status"] == "fail"
    assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)  # caught at the first stage
    if behaviour == "unconfident":
        assert gates["mean e2e_ms_p95 / control <= 1.5"]["status"] == "pass"  # latency was fine
    assert _kinds(plane)[-1] == "rollback"
    eventually(lambda: set(plane.versions().values()) == {1}, 30, "every device back on version 1")


def test_kill_9_mid_stage_resumes_the_same_rollout(plane: ControlPlane) -> None:
    plane.start_serve()
    plane.simulate(10)
    plane.ready(10)
    plane.start_rollout()
    eventually(lambda: plane.status()["stage"]["name"] == "half", 60, "the half stage")
    plane.kill_serve()
    before = plane.status()
    assert before["state"] == "running" and before["stage"]["name"] == "half"
    plane.start_serve()
    st = plane.finished()
    assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
    assert _kinds(plane) == ["start", "advance", "advance", "complete"]
    eventually(lambda: set(plane.versions().values()) == {2}, 30, "every device on version 2")


def test_offline_device_does_not_block_and_converges_when_it_returns(plane: ControlPlane) -> None:
    plane.start_serve()
    sim = plane.simulate(10)
    plane.ready(10)
    away = sorted(plane.versions())[4]
    plane.sims[0].call(lambda: sim.go_offline(away, 30))
    eventually(lambda: plane.db().device(away).status != "online", 30, f"{away} seen offline")
    plane.start_rollout()
    st = plane.finished()
    assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
    row = next(d for d in st["device_detail"] if d["device_id"] == away)
    assert (row["state"], row["kind"]) == ("failed", "offline")
    assert plane.versions()[away] == 1
    eventually(lambda: plane.versions()[away] == 2, 60, f"{away} on version 2 after it returns")


def test_real_agents_and_simulated_devices_reach_the_new_version(plane: ControlPlane) -> None:
    from tests.integration.agent_harness import agent_config, running_agent

    plan = plane.tmp / "health.yaml"
    health = [{"kind": "restarts"}, {"metric": "thread_errors", "op": "<=", "threshold": 0, "aggregate": "increase",
                                     "min_samples": 2},
              {"metric": "e2e_ms_p95", "op": "<=", "threshold": 2000}]
    plan.write_text(yaml.safe_dump({"stages": [
        {"name": n, "percent": p, "gates": health, **{**COMMON, "device_deadline_s": 60}}
        for n, p in (("canary", 10), ("half", 50), ("all", 100))]}))
    trees = []
    for i in range(2):
        home = plane.tmp / f"agent{i}"
        home.mkdir()
        trees.append(agent_config(home, plane.pkg, plane.pkg_pub, plane.broker,
                                  {"type": "synthetic", "width": 32, "height": 32, "fps": 20},
                                  **{"events.mode": "off", "device.groups": ["north"], "sync.poll_interval_s": 60}))
    plane.start_serve()
    plane.simulate(8)
    with running_agent(trees[0]), running_agent(trees[1]):
        plane.ready(10)
        plane.start_rollout(plan)
        st = plane.finished(180)
        assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
        agents = [t["device"]["device_id"] for t in trees]
        eventually(lambda: all(plane.versions()[a] == 2 for a in agents), 60, "both real agents on version 2")
        assert set(plane.versions().values()) == {2}


def test_too_little_data_holds_then_pauses_at_the_deadline(plane: ControlPlane) -> None:
    plan = plane.tmp / "shadow.yaml"
    shadow = [{"metric": "shadow_agreement", "op": ">=", "threshold": 0.95}]  # no simulated device reports it
    plan.write_text(yaml.safe_dump({"stages": [
        {"name": "canary", "percent": 10, "gates": shadow, **{**COMMON, "deadline_s": 8}},
        {"name": "all", "percent": 100, "gates": shadow, **COMMON}]}))
    plane.start_serve()
    plane.simulate(10)
    plane.ready(10)
    plane.start_rollout(plan)
    # Wait for the hold on the gate's data: before the canary runs version 2, the plan holds for that instead.
    held = eventually(lambda: (s := plane.status())["last_decision"] == "hold"
                      and "samples of shadow_agreement" in s["last_reason"] and s, 30, "a hold for too little data")
    assert "0/3 samples of shadow_agreement" in held["last_reason"]
    st = plane.finished(60)
    assert st["state"] == "paused" and "stage deadline passed with no verdict (pause)" in st["last_reason"]
    assert _kinds(plane) == ["start", "pause"]
    assert sum(v == 2 for v in plane.versions().values()) == 1  # the canary keeps its version; nothing else moved


@pytest.fixture(params=[False, True], ids=["assigned-only", "trusting-claims"])
def liar_plane(request: pytest.FixtureRequest, tmp_path: Path, mosquitto: Broker) -> Iterator[ControlPlane]:
    """A control plane that draws cohorts from assignments only, or (to reach the gates) trusts device claims."""
    p = ControlPlane(tmp_path, mosquitto, trust_device_groups=request.param)
    try:
        yield p
    finally:
        p.close()


def _liar_notes(st: dict[str, Any], liar: str) -> str:
    return " ".join(st["suspects"].get(liar, []))


def test_a_liar_flooding_class_counts_does_not_stop_a_good_version(liar_plane: ControlPlane) -> None:
    plane = liar_plane
    plane.start_serve()
    plane.simulate(10)
    plane.ready(10)
    liar = plane.add_liar("liar_flood")
    plane.start_rollout(plane.tmp / "liar-plan.yaml")
    st = plane.finished()
    assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
    assert _kinds(plane) == ["start", "advance", "advance", "complete"]
    notes = _liar_notes(st, liar)
    if st["cohorts"] == "assigned":
        assert liar not in {d["device_id"] for d in st["device_detail"]}
        assert "names group north in its own state without an assignment" in notes, st["suspects"]
    else:  # at 100 % the liar is a canary: its 4e12 results are more than fps x window allow
        assert "its reported fps allows at most" in notes, st["suspects"]
    assert f"suspect: {liar}: " in plane.cli("status")


def test_a_liar_masking_latency_cannot_save_a_slower_version(liar_plane: ControlPlane) -> None:
    plane = liar_plane
    plane.start_serve()
    plane.simulate(10, "slow=1")
    plane.ready(10)
    liar = plane.add_liar("liar_mask")
    plane.start_rollout(plane.tmp / "liar-plan.yaml")
    st = plane.finished()
    assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
    assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)
    gates = {g["gate"]: g for g in st["gates"]}
    latency = gates["mean e2e_ms_p95 / control <= 1.5"]
    assert latency["status"] == "fail" and latency["control"] < 100, latency  # the honest devices' ~20 ms
    if liar not in {d["device_id"] for d in st["device_detail"]}:  # (a trusted liar drawn as canary fails itself)
        assert _liar_notes(st, liar), st["suspects"]  # named: left out of the cohorts, or of the control figure
    eventually(lambda: set(plane.versions().values()) == {1}, 30, "every device back on version 1")


# The default plan's gates, margins and minimum samples as they ship, on a timescale a test can wait for: a 20 s
# window of 30 s at the simulator's 2 Hz telemetry is 60 windows and 300 results per device (200 needed).
DEFAULT_TIMING = {"soak_s": 30, "analysis_interval_s": 1, "window_s": 30, "device_deadline_s": 30, "deadline_s": 150}


def default_plan_file(tmp: Path) -> Path:
    from fleet.rollout.plan import default_plan
    data = default_plan().model_dump(mode="json")
    for stage in data["stages"]:
        stage.update(DEFAULT_TIMING)
    path = tmp / "default-plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_plan_fails_a_label_permuted_version_at_the_first_stage(plane: ControlPlane) -> None:
    """Issue 17: a model whose labels are permuted (confidence unchanged) is caught by the class-mix gate at the
    canary stage under the default plan, with no shadow check on the devices."""
    plane.start_serve()
    plane.simulate(10, "permuted=1")
    plane.ready(10)
    plane.start_rollout(default_plan_file(plane.tmp))
    st = plane.finished(240)
    assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
    assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)
    gates = {g["gate"]: g for g in st["gates"]}
    assert gates["class-mix psi <= 0.2"]["status"] == "fail"
    assert gates["class-mix psi <= 0.2"]["evidence"]["low"] > 0.2
    eventually(lambda: set(plane.versions().values()) == {1}, 30, "every device back on version 1")


@pytest.mark.parametrize("behaviour", ["noisy", "slower"])
def test_default_plan_promotes_a_good_version_through_latency_noise_and_a_slowdown_within_the_margin(
        plane: ControlPlane, behaviour: str) -> None:
    """A good version on devices whose latency is as noisy as a loaded machine's, or 1.25x slower (inside the 1.5x
    margin), passes every stage; only a slowdown beyond the margin fails (test_bad_version_is_rolled_back...)."""
    plane.start_serve()
    plane.simulate(10, f"{behaviour}=1")
    plane.ready(10)
    plane.start_rollout(default_plan_file(plane.tmp))
    st = plane.finished(300)
    assert st["state"] == "completed", (st["last_reason"], plane.serve_log())
    assert _kinds(plane) == ["start", "advance", "advance", "complete"]
    eventually(lambda: set(plane.versions().values()) == {2}, 30, "every device on version 2")


def test_default_plan_fails_a_version_slower_than_its_margin_at_the_first_stage(plane: ControlPlane) -> None:
    """The other half of the effect size (issue 17 §5): a 3x slowdown, beyond the 1.5x margin and its 10 ms slack,
    fails the canary stage on latency under the default plan, while the 1.25x one above completes."""
    plane.start_serve()
    plane.simulate(10, "slow=1")
    plane.ready(10)
    plane.start_rollout(default_plan_file(plane.tmp))
    st = plane.finished(240)
    assert st["state"] == "failed", (st["last_reason"], plane.serve_log())
    assert st["stage"]["name"] == "canary" and "advance" not in _kinds(plane)
    latency = {g["gate"]: g for g in st["gates"]}["mean e2e_ms_p95 / control <= 1.5"]
    assert latency["status"] == "fail" and latency["evidence"]["low"] > 1.5, latency
    assert latency["canary"] - latency["control"] > 10  # beyond the slack too
    eventually(lambda: set(plane.versions().values()) == {1}, 30, "every device back on version 1")
