"""An agent wired to a real broker and a real local store, for integration tests."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from edge.agent import Agent
from edge.backends.base import Hardware
from edge.config import AgentConfig
from shared.config_loader import load_config
from shared.object_store import LocalStore
from shared.topics import DeviceTopics
from tests.edge.package_factory import KeyPair
from tests.fixtures.broker import Broker, MqttProbe

HW = Hardware(cpu_features=frozenset({"avx2", "sse4_2"}))


def write_public_key(keys: KeyPair, path: Path) -> Path:
    """PEM of the trusted key, as a device's config names it."""
    path.write_bytes(
        keys.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def agent_config(
    tmp: Path, store: LocalStore, pub: Path, broker: Broker, source: dict[str, Any], **over: Any
) -> dict[str, Any]:
    """A config tree for one test agent; `over` merges dotted keys."""
    tree: dict[str, Any] = {
        "device": {"fleet": "it", "device_id": f"dev-{uuid.uuid4().hex[:6]}"},
        "sync": {
            "model": "tiny",
            "store": {"uri": str(store.root)},
            "cache_dir": str(tmp / "cache"),
            "trusted_keys": [str(pub)],
            "poll_interval_s": 0.5,
            "backoff_s": 0.05,
            "download_attempts": 2,
        },
        "source": source,
        "backend": {"type": "onnxruntime", "threads": 1},
        "events": {"mode": "every"},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "telemetry_interval_s": 0.5,
            "outbox_path": str(tmp / "outbox.sqlite"),
            "keepalive_s": 5,
        },
    }
    for key, value in over.items():
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


@contextmanager
def running_agent(tree: dict[str, Any]) -> Iterator[Agent]:
    """Start an agent in this process (run loop on a thread); always stopped on exit."""
    cfg = AgentConfig.model_validate(tree)
    agent = Agent(cfg, reload=lambda over: load_config(AgentConfig, None, {**_flat(tree), **over}, {}), hardware=HW)
    agent.start()
    runner = threading.Thread(target=agent.run, name="agent-run", daemon=True)
    runner.start()
    try:
        yield agent
    finally:
        agent.request_stop()
        runner.join(timeout=30)
        agent.stop()


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def topics_of(tree: dict[str, Any]) -> DeviceTopics:
    """The topics of the agent a config tree describes."""
    return DeviceTopics(tree["device"]["fleet"], tree["device"]["device_id"])


def send_command(probe: MqttProbe, topics: DeviceTopics, name: str, body: dict[str, Any], timeout: float = 15) -> Any:
    """Publish a command and wait for its reply; returns (reply JSON, seconds until the reply)."""
    rid = body.setdefault("id", uuid.uuid4().hex[:12])
    sent = time.monotonic()
    probe.client.publish(topics.cmd(name), json.dumps(body), qos=1)
    reply = probe.wait_for(
        lambda m: m.topic == topics.reply(name) and m.json().get("id") == rid, timeout, f"reply to {name}"
    )
    return reply.json(), time.monotonic() - sent
