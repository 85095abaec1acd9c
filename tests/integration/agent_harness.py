"""An agent wired to a real broker and a real local store, for integration tests."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.agent import Agent
from edge.backends.base import Hardware
from edge.config import AgentConfig
from shared.command_signing import Target, build_body, sign_command
from shared.config_loader import load_config
from shared.object_store import LocalStore
from shared.topics import COMMANDS, DeviceTopics
from tests.edge.package_factory import KeyPair
from tests.fixtures.broker import Broker, MqttProbe

HW = Hardware(cpu_features=frozenset({"avx2", "sse4_2"}))
# The operator key every test agent trusts for commands (device.command_keys), and its sequence.
COMMAND_KEY = Ed25519PrivateKey.generate()
_COMMAND_SEQ = itertools.count(int(time.time() * 1000))


def write_public_key(keys: KeyPair, path: Path) -> Path:
    """PEM of the trusted key, as a device's config names it."""
    path.write_bytes(
        keys.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def agent_config(
    tmp: Path, store: LocalStore, pub: Path, broker: Broker, source: dict[str, Any], **over: Any
) -> dict[str, Any]:
    """A config tree for one test agent; `over` merges dotted keys. It trusts COMMAND_KEY for commands."""
    operator = tmp / "operator.pub"
    operator.write_bytes(COMMAND_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    tree: dict[str, Any] = {
        "device": {"fleet": "it", "device_id": f"dev-{uuid.uuid4().hex[:6]}", "command_keys": [str(operator)],
                   "command_state_path": str(tmp / "cmd-seq.json")},
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
def running_agent(tree: dict[str, Any], before_start: Callable[[Agent], None] | None = None) -> Iterator[Agent]:
    """Start an agent in this process (run loop on a thread); always stopped on exit.

    `before_start` may swap a test double in (e.g. a camera that can be unplugged) between building and starting.
    """
    cfg = AgentConfig.model_validate(tree)
    agent = Agent(cfg, reload=lambda over: load_config(AgentConfig, None, {**_flat(tree), **over}, {}), hardware=HW)
    if before_start is not None:
        before_start(agent)
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


def signed_command(topics: DeviceTopics, name: str, body: dict[str, Any], key: Ed25519PrivateKey = COMMAND_KEY,
                   **kw: Any) -> bytes:
    """body (id plus the command's fields) signed for this device as `edgeferry cmd` would sign it."""
    args = {k: v for k, v in body.items() if k != "id"}
    kw.setdefault("now_ms", int(time.time() * 1000))
    kw.setdefault("expires_in_s", 60)
    kw.setdefault("seq", next(_COMMAND_SEQ))
    target = kw.pop("target", None) or Target(fleet=topics.fleet, device=topics.device_id)
    return sign_command(build_body(name, target, request_id=body["id"], args=args, **kw), key)


def send_command(
    probe: MqttProbe, topics: DeviceTopics, name: str, body: dict[str, Any], timeout: float = 15,
    payload: bytes | None = None,
) -> Any:
    """Publish a command signed by COMMAND_KEY (or the given payload) and wait for its reply; returns (reply JSON,
    seconds until the reply). Unknown command names cannot be signed: they go as plain JSON."""
    rid = body.setdefault("id", uuid.uuid4().hex[:12])
    if payload is None:
        payload = signed_command(topics, name, body) if name in COMMANDS else json.dumps(body).encode()
    sent = time.monotonic()
    probe.client.publish(topics.cmd(name), payload, qos=1)
    reply = probe.wait_for(
        lambda m: m.topic == topics.reply(name) and m.json().get("id") == rid, timeout, f"reply to {name}"
    )
    return reply.json(), time.monotonic() - sent


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll cond every 50 ms; AssertionError naming what did not happen within timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
