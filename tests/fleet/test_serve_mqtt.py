"""`fleet serve` workers on a real Mosquitto: the registry from hand-published messages and from a real agent,
two workers splitting telemetry over a shared subscription with exactly one leader, and desired state that a
device which was offline converges to when it returns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fleet.config import FleetConfig
from fleet.service import LEADER_LEASE
from shared.object_store import LocalStore
from shared.payloads import StatePayload, TelemetryPayload
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_config, fleet_tree, serving, write_private_key
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, write_public_key

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))


def _state(device: str, boot: str, interval: float = 0.5, groups: tuple[str, ...] = ("north",)) -> bytes:
    return StatePayload(
        device_id=device, boot_id=boot, seq=0, ts=int(time.time() * 1000), agent_version="0.1.0",
        model={"name": "tiny", "version": 1}, hardware={}, config_digest="d", groups=list(groups),
        telemetry_interval_s=interval,
    ).model_dump_json().encode()


def _telemetry(device: str, boot: str, seq: int, **figures: Any) -> bytes:
    return TelemetryPayload(device_id=device, boot_id=boot, seq=seq, ts=int(time.time() * 1000),
                            **figures).model_dump_json().encode()


def test_registry_from_hand_published_messages(tmp_path: Path, mosquitto: Broker) -> None:
    cfg = fleet_config(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite")
    probe = MqttProbe(mosquitto)
    base = "edgeferry/it/cam-1"
    probe.publish(f"{base}/status", "online", retain=True)  # before the worker starts: it gets the retained one
    probe.publish(f"{base}/state", _state("cam-1", "boot-a"), retain=True)
    with serving(cfg) as svc:
        store = svc.store
        assert store is not None
        for i in range(3):
            probe.publish(f"{base}/telemetry", _telemetry("cam-1", "boot-a", i + 1, fps=10.0 + i))
        rec = eventually(lambda: (r := store.devices.get("cam-1")) and r.last_telemetry_ms and r, what="cam-1")
        assert store.device("cam-1").status == "online"
        assert rec.groups == ("north",) and rec.model_version == 1 and rec.restarts == 0
        eventually(lambda: len(store.telemetry_window("cam-1", 0, 2**62)) == 3, what="3 samples stored")
        hist = eventually(lambda: store.telemetry.history("cam-1", 0, 2**62), what="history from the leader")
        assert sum(n for _, n, _ in hist) == 3 and svc.is_leader
        # Silent for 3 intervals of 0.5 s: stale, although no Last Will came.
        eventually(lambda: store.device("cam-1").status == "stale", 10, "stale after 3 silent intervals")
        probe.publish(f"{base}/state", _state("cam-1", "boot-b"), retain=True)
        eventually(lambda: store.device("cam-1").restarts == 1, what="restart counted")
        assert store.device("cam-1").status == "online"
        probe.publish(f"{base}/status", "offline", retain=True)
        eventually(lambda: store.device("cam-1").status == "offline", what="offline from the Last Will")
        assert svc.ingest is not None and svc.ingest.stats.rejected == {}


def test_two_workers_split_telemetry_and_one_leads(tmp_path: Path, mosquitto: Broker, postgres_url: str) -> None:
    cfgs = [fleet_config(mosquitto, postgres_url, **{"lease.worker_id": f"w{i}"}) for i in (1, 2)]
    probe = MqttProbe(mosquitto)
    devices = [f"dev-{i}" for i in range(8)]
    with serving(cfgs[0]) as a, serving(cfgs[1]) as b:
        eventually(lambda: a.is_leader or b.is_leader, what="a leader")
        for n in range(25):
            for d in devices:
                probe.publish(f"edgeferry/it/{d}/telemetry", _telemetry(d, "boot", n + 1, fps=float(n)))
        store = a.store
        assert store is not None and a.ingest is not None and b.ingest is not None
        eventually(lambda: store.telemetry.counts()[0] == 200, 30, "all 200 samples stored")
        got = (a.ingest.stats.accepted.get("telemetry", 0), b.ingest.stats.accepted.get("telemetry", 0))
        assert sum(got) == 200 and min(got) > 0, f"each worker takes a share of the telemetry: {got}"
        assert a.is_leader != b.is_leader
        lease = store.leases.get(LEADER_LEASE)
        assert lease is not None and lease.holder == ("w1" if a.is_leader else "w2")
        assert sorted(store.devices.ids()) == devices


def test_other_worker_leads_after_kill_9(tmp_path: Path, mosquitto: Broker, postgres_url: str) -> None:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for w in ("w1", "w2"):
        conf = tmp_path / f"{w}.yaml"
        conf.write_text(yaml.safe_dump(fleet_tree(mosquitto, postgres_url, **{"lease.worker_id": w})))
        with open(tmp_path / f"{w}.log", "wb") as log:
            procs[w] = subprocess.Popen([EDGEFERRY, "fleet", "serve", "--config", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=log)
    from fleet.db.store import FleetStore

    store = FleetStore.open(postgres_url, "it")
    try:
        leader = eventually(lambda: (lease := store.leases.get(LEADER_LEASE)) and lease.holder, 60, "a leader")
        other = "w2" if leader == "w1" else "w1"
        procs[leader].kill()
        procs[leader].wait(10)
        eventually(lambda: (lease := store.leases.get(LEADER_LEASE)) and lease.holder == other, 30,
                   f"{other} takes the lease")
        probe = MqttProbe(mosquitto)
        probe.publish("edgeferry/it/cam-9/telemetry", _telemetry("cam-9", "boot", 1, fps=1.0))
        eventually(lambda: store.devices.get("cam-9"), 20, "the survivor ingests alone")
        procs[other].terminate()
        assert procs[other].wait(20) == 0, (tmp_path / f"{other}.log").read_text()
        assert store.leases.get(LEADER_LEASE) is None, "a clean stop gives the lease up"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        store.close()


def test_real_agent_registers_and_converges_to_desired_state_set_while_offline(
    tmp_path: Path, mosquitto: Broker
) -> None:
    keys = new_keypair()
    pkg = LocalStore(tmp_path / "store")
    make_package(pkg, "tiny", 1, keys)
    make_package(pkg, "tiny", 2, keys, bias=3.0, latest=False)
    pub = write_public_key(keys, tmp_path / "pkg.pub")
    tree = agent_config(tmp_path, pkg, pub, mosquitto, {"type": "synthetic", "width": 32, "height": 32, "fps": 25},
                        **{"events.mode": "off", "device.groups": ["roof"], "sync.poll_interval_s": 60})
    device = tree["device"]["device_id"]
    conf = tmp_path / "fleet.yaml"
    conf.write_text(yaml.safe_dump(fleet_tree(
        mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite", **{
            "commands.key": str(write_private_key(COMMAND_KEY, tmp_path / "fleet.key")),
            "packages.store.uri": str(pkg.root), "packages.trusted_keys": [str(pub)],
        })))
    cfg = FleetConfig.model_validate(yaml.safe_load(conf.read_text()))

    def devices_json() -> list[dict[str, Any]]:
        out = subprocess.run([EDGEFERRY, "fleet", "devices", "--output", "json", "--config", str(conf)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))

    with serving(cfg) as svc:
        store = svc.store
        assert store is not None
        with running_agent(tree):
            rec = eventually(lambda: (r := store.devices.get(device)) and r.model_version == 1 and r, 30,
                             "the agent serving v1 in the registry")
            assert rec.groups == ("roof",) and rec.agent_version and rec.telemetry_interval_s == 0.5
            eventually(lambda: store.device(device).status == "online", what="online")
            eventually(lambda: store.telemetry_window(device, 0, 2**62), what="telemetry samples")
        eventually(lambda: store.device(device).status == "stopped", what="stopped after a clean stop")

        out = subprocess.run([EDGEFERRY, "fleet", "deploy", "--model", "tiny", "--model-version", "2",
                              "--group", "roof", "--config", str(conf)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"deployed tiny v2 to group roof: 1 device(s) ({device})" in out.stdout
        [row] = devices_json()
        assert (row["desired_version"], row["converged"]) == (2, False)

        with running_agent(tree):  # back online: it finds the retained desired state
            eventually(lambda: store.device(device).model_version == 2, 60, "the returning agent on v2")
            [row] = devices_json()
            assert (row["model_version"], row["converged"], row["status"]) == (2, True, "online")


def test_a_device_joining_a_group_later_gets_its_desired_state(tmp_path: Path, mosquitto: Broker) -> None:
    from fleet.db.desired import DesiredEntry
    from shared.desired_state import verify_desired
    from shared.signing import key_id

    cfg = fleet_config(mosquitto, f"sqlite:///{tmp_path}/fleet.sqlite",
                       **{"commands.key": str(write_private_key(COMMAND_KEY, tmp_path / "fleet.key"))})
    probe = MqttProbe(mosquitto, "edgeferry/it/+/desired")
    with serving(cfg) as svc:
        assert svc.store is not None
        svc.store.desired.set(DesiredEntry("group", "north", "tiny", 4, set_ms=svc.store.clock()))
        probe.publish("edgeferry/it/cam-7/state", _state("cam-7", "boot", groups=("north",)), retain=True)
        msg = probe.wait_for(lambda m: m.topic == "edgeferry/it/cam-7/desired", 20, "desired state for cam-7")
        state = verify_desired(msg.payload, {key_id(COMMAND_KEY.public_key()): COMMAND_KEY.public_key()},
                               "it", "cam-7")
        assert (state.model, state.version) == ("tiny", 4)
        late = MqttProbe(mosquitto, "edgeferry/it/cam-7/desired")
        assert late.wait_for(lambda m: m.retain, 10, "the retained copy").payload == msg.payload
        late.close()
        time.sleep(1.5)  # several maintenance passes: an unchanged desired state is not sent again
        assert len(probe.on("edgeferry/it/cam-7/desired")) == 1
