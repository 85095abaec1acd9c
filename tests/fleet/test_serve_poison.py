"""Black box: a hostile device publishes each poison of issues 14 and 19 on its own topics through a real Mosquitto
into `fleet serve` (SQLite and PostgreSQL). Honest devices' figures keep moving, the bad messages are counted
against the bad device in the registry and /metrics, a restart with its retained poison leaves nobody `unknown`,
and `edgeferry fleet devices remove` forgets it and clears its retained topics."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.broker import Broker, MqttProbe
from tests.fleet.helpers import eventually, fleet_config, serving
from tests.fleet.poison import raw, state_doc, state_poisons, telemetry_doc, telemetry_poisons

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
BASE = "edgeferry/it"
HONEST = ("cam-1", "cam-2")


def _fresh_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/second.sqlite"
    server = request.getfixturevalue("postgres_server")
    return str(server.url(server.create_database()))


def test_a_hostile_device_costs_only_itself(request: pytest.FixtureRequest, tmp_path: Path, mosquitto: Broker,
                                            db_url: str) -> None:
    probe = MqttProbe(mosquitto)
    for device in (*HONEST, "evil"):
        probe.publish(f"{BASE}/{device}/status", "online", retain=True)
        probe.publish(f"{BASE}/{device}/state", json.dumps(state_doc(device)).encode(), retain=True)
    # The retained poison: state dated 10**20, left on the broker for every restart.
    probe.publish(f"{BASE}/evil/state", raw(state_doc("evil"), ts=str(10**20)), retain=True)
    poisons = [(f"{BASE}/evil/state", p) for _, p in state_poisons("evil")] + \
        [(f"{BASE}/evil/telemetry", p) for _, p in telemetry_poisons("evil")]
    cfg = fleet_config(mosquitto, db_url, **{"metrics.port": 0})
    with serving(cfg) as svc:
        store = svc.store
        assert store is not None and svc.ingest is not None
        for seq, (topic, payload) in enumerate(poisons):
            probe.publish(topic, payload)
            for device in HONEST:
                probe.publish(f"{BASE}/{device}/telemetry", json.dumps(telemetry_doc(device, seq)).encode())
        for device in HONEST:
            eventually(lambda d=device: len(store.telemetry_window(d, 0, 2**62)) == len(poisons),
                       what=f"every telemetry sample of {device}")
        evil = eventually(lambda: (r := store.devices.get("evil")) and r.refused == len(poisons) + 1 and r,
                          what="each poison (and the retained one) counted against evil")
        assert [store.device(d).refused for d in HONEST] == [0, 0]
        assert evil.reported_status == "online" and store.telemetry_window("evil", 0, 2**62) == []
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=10) as resp:
            scrape = resp.read().decode()
        assert f'edgeferry_device_ingest_refused_total{{device="evil",fleet="it"}} {len(poisons) + 1}.0' in scrape
        assert 'edgeferry_device_ingest_refused_total{device="cam-1",fleet="it"} 0.0' in scrape
        # The writer still runs: a message after all the poison lands.
        probe.publish(f"{BASE}/cam-1/telemetry", json.dumps(telemetry_doc("cam-1", 999)).encode())
        eventually(lambda: len(store.telemetry_window("cam-1", 0, 2**62)) == len(poisons) + 1, what="one more")

    # A restart on an empty database: only the broker's retained messages, the poisoned one among them.
    second = fleet_config(mosquitto, _fresh_url(request, db_url, tmp_path))
    with serving(second) as svc:
        store = svc.store
        assert store is not None
        for device in HONEST:
            rec = eventually(lambda d=device: (r := store.devices.get(d)) and r.groups and r, what=f"{device} back")
            assert store.device(device).status != "unknown" and rec.groups == ("north",)
        eventually(lambda: (r := store.devices.get("evil")) and r.refused == 1, what="the retained poison counted")

        conf = ["--set", f"database.url={second.database.url}", "--set", "fleet=it",
                "--set", f"broker.host={mosquitto.host}", "--set", f"broker.port={mosquitto.port}"]
        done = subprocess.run([EDGEFERRY, "fleet", "devices", "remove", "evil", *conf], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "removed evil" in done.stdout
        assert store.devices.get("evil") is None and store.devices.get("cam-1") is not None
    late = MqttProbe(mosquitto, f"{BASE}/#")
    late.wait_for(lambda m: m.topic == f"{BASE}/cam-1/state", what="cam-1's retained state")
    assert not [m.topic for m in late.messages if "/evil/" in m.topic]
    late.close()
    probe.close()
