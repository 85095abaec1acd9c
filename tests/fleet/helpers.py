"""Helpers for fleet tests: a config for a worker on a test broker, keys as PEM files, waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.config import FleetConfig
from fleet.service import FleetService
from tests.fixtures.broker import Broker

T = TypeVar("T")


def write_private_key(key: Ed25519PrivateKey, path: Path) -> Path:
    """PEM of a private key, as `edgeferry keygen` writes it."""
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def fleet_tree(broker: Broker, db_url: str, fleet: str = "it", **over: Any) -> dict[str, Any]:
    """A fleet config tree for tests (fast lease and maintenance); `over` merges dotted keys."""
    tree: dict[str, Any] = {
        "fleet": fleet,
        "broker": {"host": broker.host, "port": broker.port, "keepalive_s": 5},
        "database": {"url": db_url},
        "lease": {"ttl_s": 2.0, "renew_s": 0.3},
        "registry": {"maintenance_interval_s": 0.5},
        "controller": {"interval_s": 0.5},
    }
    for key, value in over.items():
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


def fleet_config(broker: Broker, db_url: str, **over: Any) -> FleetConfig:
    """The validated config."""
    return FleetConfig.model_validate(fleet_tree(broker, db_url, **over))


def eventually(check: Callable[[], T | None], timeout: float = 20, what: str = "the condition") -> T:
    """Poll check() until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@contextmanager
def serving(cfg: FleetConfig) -> Iterator[FleetService]:
    """A started control-plane worker, stopped on the way out."""
    service = FleetService(cfg)
    service.start()
    try:
        yield service
    finally:
        service.stop()
