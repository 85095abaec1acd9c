"""Publishing cannot bypass a rollout on a fleet-managed device: against a real Mosquitto and real agents sharing
one store, a device that applied a signed desired state ignores a newly published latest.json (an unmanaged device
beside it takes it, as before) and moves only when its desired state says so (a version, or a channel to follow),
also after that state is cleared."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cloud.publish import publish_pointer
from shared.desired_state import DesiredState, sign_desired
from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, topics_of, write_public_key

SYNTHETIC = {"type": "synthetic", "width": 32, "height": 32, "fps": 25}


def _desired(tree: dict[str, Any], version: int | None, seq: int, channel: str | None = None) -> bytes:
    return sign_desired(DesiredState(fleet=tree["device"]["fleet"], device_id=tree["device"]["device_id"],
                                     model="tiny", version=version, channel=channel,
                                     issued_at_ms=int(time.time() * 1000), seq=seq), COMMAND_KEY)


def _state(probe: MqttProbe, tree: dict[str, Any], timeout: float = 30, **want: Any) -> dict[str, Any]:
    topic = topics_of(tree).state

    def fits(m: Any) -> bool:
        if m.topic != topic:
            return False
        doc = m.json()
        return all((doc["model"]["version"] if k == "version" else doc.get(k)) == v
                                        for k, v in want.items())

    return dict(probe.wait_for(fits, timeout, f"state with {want}").json())


def _served_after(probe: MqttProbe, tree: dict[str, Any], since_ms: int) -> float:
    """model_version of the first telemetry report sent after since_ms."""
    topic = topics_of(tree).telemetry
    msg = probe.wait_for(lambda m: m.topic == topic and m.json()["ts"] > since_ms, 15, "a later telemetry report")
    return float(msg.json()["model_version"])


def test_publish_moves_an_unmanaged_device_but_not_a_fleet_managed_one(tmp_path: Path, mosquitto: Broker) -> None:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    pub = write_public_key(keys, tmp_path / "k.pub")
    trees = []
    for name in ("managed", "free"):
        (tmp_path / name).mkdir()
        trees.append(agent_config(tmp_path / name, store, pub, mosquitto, SYNTHETIC, **{"events.mode": "off"}))
    managed, free = trees
    make_package(store, "tiny", 1, keys)
    probe = MqttProbe(mosquitto, f"edgeferry/{managed['device']['fleet']}/#")
    desired_topic = topics_of(managed).desired
    probe.client.publish(desired_topic, _desired(managed, 1, seq=10), qos=1, retain=True).wait_for_publish(10)
    try:
        with running_agent(managed), running_agent(free):
            state = _state(probe, managed, version=1, follow="desired")
            assert state["channel"] == "stable" and state["desired_version"] == 1
            assert _state(probe, free, version=1)["follow"] == "latest"  # the default without a control plane

            make_package(store, "tiny", 2, keys, bias=3.0)  # `edgeferry train` publishing a new version
            _state(probe, free, version=2)  # the unmanaged device takes it, as before
            assert _served_after(probe, managed, int(time.time() * 1000) + 1500) == 1  # polls later: still v1

            probe.client.publish(desired_topic, _desired(managed, 2, seq=11), qos=1, retain=True)
            _state(probe, managed, version=2, desired_version=2)  # the desired state moves it

            # A rollout that ends clears the device's desired state: a managed device stays where it is.
            probe.client.publish(desired_topic, b"", qos=1, retain=True).wait_for_publish(10)
            _state(probe, managed, version=2, desired_version=None, follow="desired")
            make_package(store, "tiny", 3, keys, bias=-3.0)
            _state(probe, free, version=3)
            assert _served_after(probe, managed, int(time.time() * 1000) + 1500) == 2

            # A desired state may name a channel instead: the device follows that channel's signed pointer.
            make_package(store, "tiny", 4, keys, latest=False)
            publish_pointer(store, "tiny", keys.private, channel="canary", version=4)
            probe.client.publish(desired_topic, _desired(managed, None, seq=12, channel="canary"), qos=1, retain=True)
            _state(probe, managed, version=4, channel="canary", follow="desired")
            assert _served_after(probe, free, int(time.time() * 1000) + 1000) == 3  # stable did not move
    finally:
        probe.client.publish(desired_topic, b"", qos=1, retain=True).wait_for_publish(10)
