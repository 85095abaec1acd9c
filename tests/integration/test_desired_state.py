"""Desired state against a real Mosquitto and a real agent: a retained signed desired state published while the
agent was away is served when it starts and holds it there; old, unsigned, forged and mis-addressed ones are
refused and counted in telemetry; the quality figures the rollout gates read arrive with every report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.desired_state import DesiredState, sign_desired
from shared.object_store import LocalStore
from tests.edge.package_factory import DEFAULT_LABELS, KeyPair, make_package, new_keypair
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import COMMAND_KEY, agent_config, running_agent, topics_of, write_public_key

SYNTHETIC = {"type": "synthetic", "width": 32, "height": 32, "fps": 25}


def _tree(tmp_path: Path, broker: Broker, **over: Any) -> tuple[dict[str, Any], LocalStore, KeyPair]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, SYNTHETIC,
                        **{"events.mode": "off", "device.groups": ["roof", "north"], **over})
    return tree, store, keys


def _desired(tree: dict[str, Any], version: int, seq: int, key: Ed25519PrivateKey = COMMAND_KEY,
             **over: Any) -> bytes:
    fields: dict[str, Any] = {"fleet": tree["device"]["fleet"], "device_id": tree["device"]["device_id"],
                              "model": "tiny", "version": version, "issued_at_ms": int(time.time() * 1000),
                              "seq": seq, **over}
    return sign_desired(DesiredState(**fields), key)


def _publish_retained(probe: MqttProbe, topic: str, payload: bytes) -> None:
    probe.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)


def _state_serving(probe: MqttProbe, tree: dict[str, Any], version: int, timeout: float = 30) -> dict[str, Any]:
    topics = topics_of(tree)
    msg = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == version, timeout,
                         f"state serving v{version}")
    return dict(msg.json())


def _telemetry_after(probe: MqttProbe, tree: dict[str, Any], since: int, want: dict[str, float],
                     timeout: float = 15) -> dict[str, Any]:
    topic = topics_of(tree).telemetry
    msg = probe.wait_for(
        lambda m: m.topic == topic and m.json()["ts"] > since and all(m.json().get(k) == v for k, v in want.items()),
        timeout, f"telemetry with {want}",
    )
    return dict(msg.json())


def test_desired_state_published_while_offline_is_served_on_start_and_held(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, store, keys = _tree(tmp_path, mosquitto)
    make_package(store, "tiny", 1, keys)
    make_package(store, "tiny", 2, keys, bias=3.0, latest=False)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    _publish_retained(probe, topics.desired, _desired(tree, 2, seq=100, rollout_id="r-1"))

    with running_agent(tree):
        state = _state_serving(probe, tree, 2)
        assert state["desired_version"] == 2
        assert state["groups"] == ["roof", "north"]
        assert state["telemetry_interval_s"] == 0.5
        # A newer latest.json does not move a device held by its desired state.
        make_package(store, "tiny", 3, keys, bias=-3.0)
        since = int(time.time() * 1000) + 2000
        held = _telemetry_after(probe, tree, since, {"desired_applied": 1.0})
        assert held["model_version"] == 2 and held["desired_version"] == 2
        assert held["desired_refused"] == 0

        # A newer desired state moves it, also downwards when the signed state allows it.
        _publish_retained(probe, topics.desired, _desired(tree, 1, seq=101, allow_downgrade=True))
        _state_serving(probe, tree, 1)
    # Restarting with the same retained state is the state in force, not a replay: nothing refused, still v1.
    with running_agent(tree):
        now = int(time.time() * 1000)
        again = _telemetry_after(probe, tree, now, {"model_version": 1.0, "desired_version": 1.0})
        time.sleep(1.5)  # let the retained desired message and a few polls of latest.json (v3) reach the agent
        later = _telemetry_after(probe, tree, int(time.time() * 1000), {})
        assert later["model_version"] == 1 and later["desired_refused"] == 0 and again["desired_refused"] == 0


def test_old_unsigned_forged_and_misaddressed_desired_states_are_refused_and_counted(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, store, keys = _tree(tmp_path, mosquitto)
    make_package(store, "tiny", 1, keys)
    make_package(store, "tiny", 2, keys, bias=3.0, latest=False)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree):
        _state_serving(probe, tree, 1)
        _publish_retained(probe, topics.desired, _desired(tree, 2, seq=50))
        _state_serving(probe, tree, 2)

        stranger = Ed25519PrivateKey.generate()
        plain = DesiredState(fleet=topics.fleet, device_id=topics.device_id, model="tiny", version=1,
                             allow_downgrade=True, issued_at_ms=1, seq=999).model_dump_json().encode()
        tampered = json.loads(_desired(tree, 2, seq=60))
        tampered["signed"] = tampered["signed"].replace('"version":2', '"version":1')
        bad = [
            _desired(tree, 1, seq=40, allow_downgrade=True),  # older seq: a replayed retained message
            plain,  # unsigned
            _desired(tree, 1, seq=70, key=stranger, allow_downgrade=True),  # key not in device.command_keys
            json.dumps(tampered).encode(),  # altered after signing
            _desired({"device": {"fleet": topics.fleet, "device_id": "someone-else"}}, 1, seq=80),
        ]
        for payload in bad:
            _publish_retained(probe, topics.desired, payload)
        figures = _telemetry_after(probe, tree, int(time.time() * 1000), {"desired_refused": float(len(bad))})
        assert figures["model_version"] == 2 and figures["desired_version"] == 2
        assert figures["desired_applied"] == 1


def test_quality_figures_cover_each_window_for_a_confident_and_an_unsure_model(
    tmp_path: Path, mosquitto: Broker
) -> None:
    tree, store, keys = _tree(tmp_path, mosquitto, **{"mqtt.telemetry_interval_s": 1.0})
    make_package(store, "tiny", 1, keys, bias=40.0)
    probe = MqttProbe(mosquitto, topics_of(tree).telemetry)
    with running_agent(tree):
        sure = probe.wait_for(lambda m: (m.json().get("results_window") or 0) >= 5, 30, "a window with results").json()
        assert sure["conf_mean"] > 0.99 and sure["low_conf_share"] == 0.0
        assert sure["class_counts"] == {DEFAULT_LABELS[0]: sure["results_window"]}

    (tmp_path / "b").mkdir()
    tree2, store2, keys2 = _tree(tmp_path / "b", mosquitto, **{"mqtt.telemetry_interval_s": 1.0})
    make_package(store2, "tiny", 1, keys2, bias=0.0, labels=[f"c{i}" for i in range(40)])
    probe2 = MqttProbe(mosquitto, topics_of(tree2).telemetry)
    with running_agent(tree2):
        unsure = probe2.wait_for(lambda m: (m.json().get("results_window") or 0) >= 5, 30,
                                 "a window with results").json()
    assert unsure["conf_mean"] < sure["conf_mean"] - 0.2
    assert unsure["low_conf_share"] > 0.3
    assert sum(unsure["class_counts"].values()) == unsure["results_window"]
