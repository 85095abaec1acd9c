"""One package the agent syncs and serves: its ModelSync and ModelSlot, changed one install at a time.

sync.model and every model of `models:` deploy, roll back, re-measure and poll alike; what a switch means for the
rest of the agent (the streams it equips, state, the shadow check) is the agent's `switch` callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edge.config import ModelConfig, SyncConfig
from edge.errors import AgentError
from edge.hot_swap import ModelSlot, ServingModel
from edge.model_sync import ModelSync

log = logging.getLogger(__name__)


def side_sync_config(sync: SyncConfig, side: ModelConfig) -> SyncConfig:
    """sync.* (as in force) for a model of `models:`: its name, channel and pin; it follows its pointer (the fleet's
    desired state names sync.model) and runs no shadow check (that compares sync.model's versions)."""
    return sync.model_copy(update={
        "model": side.name, "channel": side.channel or sync.channel, "pinned_version": side.pinned_version,
        "follow": "latest", "shadow_every": None, "shadow_canary_budget_ms": None,
    })


class ModelUnit:
    """deploy/rollback/benchmark from the command and poll threads, serialised by the agent's one switch lock."""

    def __init__(self, sync: ModelSync, slot: ModelSlot,
                 switch: Callable[[ModelUnit, ServingModel], dict[str, Any]], lock: threading.Lock) -> None:
        self.sync = sync
        self.slot = slot
        self._switch = switch
        self._lock = lock

    @property
    def name(self) -> str:
        """The model's name (sync.model, or its `models:` entry)."""
        return self.sync.cfg.model

    def recover(self) -> dict[str, Any] | None:
        """Serve the verified version the cache holds (at start), if any."""
        with self._lock:
            recovered = self.sync.serve_recovered()
            return None if recovered is None else self._switch(self, recovered)

    def poll_once(self) -> None:
        """Switch to what the pointer (or pin) names when it is newer; a fleet-managed sync.model converges only."""
        version = self.sync.check_latest()
        if version is not None:
            self.deploy(version, explicit=False)

    def deploy(self, version: int | None, *, explicit: bool = True, allow_downgrade: bool = False) -> dict[str, Any]:
        """Install, verify, smoke-test and hot-swap a version; the served model is untouched on any failure."""
        with self._lock:
            if version is None:
                version = self.sync.check_latest(explicit=explicit)
                if version is None:
                    current = self.slot.current
                    return {"model": self.name, "version": current.version if current else None, "changed": False}
            return self._switch(self, self.sync.serve_version(version, explicit=explicit,
                                                              allow_downgrade=allow_downgrade))

    def rollback(self) -> dict[str, Any]:
        """Switch back to the previous installed version."""
        with self._lock:
            return self._switch(self, self.sync.serve_rollback())

    def benchmark(self) -> dict[str, Any]:
        """Time every runtime candidate for the served version again and serve the fastest."""
        with self._lock:
            current = self.slot.current
            if current is None:
                raise AgentError(f"no {self.name} model is served yet; nothing to benchmark")
            return self._switch(self, self.sync.serve_remeasured(current.version))
