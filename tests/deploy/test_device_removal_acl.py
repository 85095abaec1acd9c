"""Removing a device on the shipped broker config: the fleet's broker user may not write in a device's name, so the
broker refuses (PUBACK 135) its clears of the device's status, state and benchmark. `fleet devices remove` and the
web app say which retained topics were kept and who can clear them; the removed device stays removed through a
`fleet serve` restart (its retained messages are ignored) until it publishes live again. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dashboards.web.event_buffer import EventBuffer
from dashboards.web.figures import FigureBuffer
from dashboards.web.fleet_adapter import FleetAdapter
from fleet.command_sender import CommandSender
from fleet.config import FleetConfig
from fleet.db.store import FleetStore
from fleet.mqtt_client import FleetMqtt
from fleet.service import FleetService
from tests.deploy.prod_broker import ACCEPTED_BELOW, Account, ProdBroker, pw
from tests.fixtures.postgres import postgres_server, postgres_url
from tests.fleet.helpers import eventually, fleet_tree, serving
from tests.fleet.poison import state_doc, telemetry_doc

__all__ = ["postgres_server", "postgres_url"]

EDGEFERRY = str(Path(sys.executable).with_name("edgeferry"))
BASE = "edgeferry/lab"
KEPT = ("status", "state", "benchmark")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An SQLite file, and a fresh database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.sqlite"
    return str(request.getfixturevalue("postgres_url"))


def _config(prod: ProdBroker, db_url: str, user: str = "edgeferry-fleet") -> FleetConfig:
    tree = fleet_tree(prod.broker, db_url, fleet="lab", **{"broker.port": prod.services_port,
                                                           "broker.username": user, "broker.password": pw(user)})
    return FleetConfig.model_validate(tree)


def _store_of(svc: FleetService) -> FleetStore:
    assert svc.store is not None
    return svc.store


def _publish_retained(device: Account, device_id: str) -> None:
    for leaf, payload in (("status", b"online"), ("state", json.dumps(state_doc(device_id)).encode()),
                          ("benchmark", b'{"choice": "onnxruntime"}')):
        assert device.publish(f"{BASE}/{device_id}/{leaf}", payload, retain=True) < ACCEPTED_BELOW


def _retained(login: Callable[..., Account], device_id: str) -> list[str]:
    """Leaves of the device's topics the broker holds retained now (an ops subscriber sees them on subscribe)."""
    ops = login("edgeferry-ops", client_id=f"edgeferry-ops/look-{device_id}")
    ops.subscribe(f"{BASE}/{device_id}/#")
    ops.publish(f"{BASE}/{device_id}/zz-probe", b"x")  # not retained: arrives after every retained one
    ops.wait_topic(f"{BASE}/{device_id}/zz-probe")
    leaves = sorted(t.rsplit("/", 1)[1] for t, p, retain in ops.messages if retain and p)
    ops.close()
    return leaves


def _remove(cfg: FleetConfig, device_id: str) -> subprocess.CompletedProcess[str]:
    b = cfg.broker
    assert b.password is not None
    conf = ["--set", f"database.url={cfg.database.url}", "--set", "fleet=lab", "--set", f"broker.host={b.host}",
            "--set", f"broker.port={b.port}", "--set", f"broker.username={b.username}",
            "--set", f"broker.password={b.password.get_secret_value()}"]
    return subprocess.run([EDGEFERRY, "fleet", "devices", "remove", device_id, *conf], capture_output=True,
                          text=True, timeout=60)


def test_removed_device_stays_removed_through_a_restart_and_the_cli_says_what_the_broker_kept(
    prod: ProdBroker, login: Callable[..., Account], db_url: str
) -> None:
    cam1, cam2 = login("lab.cam-1"), login("lab.cam-2")
    _publish_retained(cam1, "cam-1")
    cfg = _config(prod, db_url)
    with serving(cfg) as svc:
        store = _store_of(svc)
        eventually(lambda: (r := store.devices.get("cam-1")) and r.groups, what="cam-1 registered")
        done = _remove(cfg, "cam-1")
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "removed cam-1 from fleet lab" in out
        for leaf in KEPT:
            assert f"{BASE}/cam-1/{leaf}" in out
        assert "edgeferry-ops" in out and "mosquitto_pub" in out
        assert "cleared 4" not in out and store.devices.get("cam-1") is None
    assert _retained(login, "cam-1") == sorted(KEPT)  # the broker did keep them, as the CLI said

    # Restart: the broker hands the removed device's retained status and state over again; a new camera's too.
    _publish_retained(cam2, "cam-2")
    with serving(cfg) as svc:
        store = _store_of(svc)
        eventually(lambda: (r := store.devices.get("cam-2")) and r.groups, what="cam-2 registered from retained")
        eventually(lambda: svc.ingest is not None and svc.ingest.pending() == 0, what="ingest drained")
        assert store.devices.get("cam-1") is None
        assert [r.device_id for r in store.list_devices()] == ["cam-2"]

        # The camera really is back: its live telemetry registers it again.
        live = json.dumps(telemetry_doc("cam-1", 1)).encode()
        assert cam1.publish(f"{BASE}/cam-1/telemetry", live) < ACCEPTED_BELOW
        eventually(lambda: store.devices.get("cam-1"), what="cam-1 back after a live message")
        assert store.tombstones.among(["cam-1"]) == set()

    # The operators' broker user may clear them: the same command run as edgeferry-ops clears all four.
    done = _remove(_config(prod, db_url, "edgeferry-ops"), "cam-1")
    assert done.returncode == 0, done.stderr
    assert "cleared 4 retained topics" in done.stdout and "kept" not in done.stdout
    assert _retained(login, "cam-1") == []


def test_the_web_app_says_which_retained_topics_the_broker_kept(
    prod: ProdBroker, login: Callable[..., Account], tmp_path: Path
) -> None:
    cam = login("lab.cam-1")
    _publish_retained(cam, "cam-1")
    cfg = _config(prod, f"sqlite:///{tmp_path}/fleet.sqlite")
    store = FleetStore.open(cfg.database.url, "lab")
    mqtt = FleetMqtt(cfg.broker)
    mqtt.connect()
    try:
        from fleet.ingest import Ingest

        Ingest(store).process([(f"{BASE}/cam-1/state", json.dumps(state_doc("cam-1")).encode(), True, 1)])
        sender = CommandSender(store, mqtt, Ed25519PrivateKey.generate())
        adapter: Any = FleetAdapter(store, None, sender, EventBuffer(), FigureBuffer())
        said = adapter.remove("cam-1")
    finally:
        mqtt.close()
        store.close()
    assert said.startswith("cam-1 removed from the registry")
    for leaf in KEPT:
        assert f"{BASE}/cam-1/{leaf}" in said
    assert "edgeferry-ops" in said and "retained topics" in said
    assert _retained(login, "cam-1") == sorted(KEPT)
