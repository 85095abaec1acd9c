"""Config changes while running (set-config, SIGHUP): all or nothing, and never a trust anchor from a command.

A change is validated as a whole config (file, environment, flags and earlier set-config values together), then
every component prepares its part (loading key files, building emitters) without touching what runs; only when
all of them prepared does any of it take effect. A command may never change what the device trusts, where it
fetches from or how it is reached: those keys change only through the local config file and SIGHUP.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from edge.config import AgentConfig
from edge.errors import AgentError
from shared.errors import ConfigError

log = logging.getLogger(__name__)

ConfigLoader = Callable[[Mapping[str, Any]], AgentConfig]
# Prepares a component for the new config without changing it; returns what makes it take effect (or None).
Applier = Callable[[AgentConfig, list[str]], Callable[[], None] | None]
Origin = Literal["command", "reload"]

# Keys (or key prefixes, ending in '.') only the local config file may change.
TRUST_ANCHORS: tuple[str, ...] = (
    "sync.trusted_keys",
    "sync.allow_unsigned",
    "sync.store.",
    "sync.cache_dir",
    "device.",
    "mqtt.",
    "daemon.prometheus_host",
    "daemon.prometheus_port",
    # Snapshots evict the oldest *.jpg of their directory: a command must not point that at someone else's files.
    "detection.snapshots.dir",
)
# Keys a running agent applies at once; any other change is reported as needing a restart.
LIVE_KEYS: tuple[str, ...] = (
    "events.",
    "daemon.log_level",
    "daemon.log_json",
    "sync.poll_interval_s",
    "sync.pinned_version",
    "sync.follow",
    "sync.channel",
    "sync.variant",
    "sync.max_accuracy_drop",
    "sync.trusted_keys",
    "sync.allow_unsigned",
    "run.",
    # Object filters, zones, tracking, events and snapshot limits (not snapshots.dir: a trust anchor above).
    "detection.",
    # The anomaly alert rule (k, n, cooldown, threshold override); sensor.input needs a restart (the source's checks).
    "sensor.alerts.",
    # Streams added, removed or changed (one list): the others keep running (edge.streams.server.change_streams).
    "streams",
    # A further model's channel and pin (its sync is made at start: adding or removing one is refused live).
    "models",
)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the leaves of a nested mapping."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


def matches(key: str, patterns: tuple[str, ...]) -> bool:
    """Whether a dotted key is one of the patterns or lies under a prefix pattern."""
    return any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in patterns)


def config_changes(old: AgentConfig, new: AgentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    a, b = leaves(old.model_dump(mode="json")), leaves(new.model_dump(mode="json"))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def with_keys(old: AgentConfig, new: AgentConfig, keys: list[str]) -> AgentConfig:
    """old with the given dotted keys taken from new: what runs now, so restart-only keys keep reporting.

    Keys of dict settings are data (zone names, labels that may hold dots): an entry only new has is added, an
    entry new lacks is removed.
    """
    merged = old.model_dump()
    source = new.model_dump()
    for key in keys:
        _take(merged, source, key)
    if merged.get("streams"):
        # The dump names `source:` (its default) beside `streams:`, which a config may not do: streams serve.
        merged.pop("source", None)
    return AgentConfig.model_validate(merged)


def _take(dst: dict[str, Any], src: dict[str, Any], key: str) -> None:
    """Copy the value at a dotted key from src into dst, or remove it from dst when src has none."""
    names = [k for tree in (dst, src) for k in tree if key == k or key.startswith(f"{k}.")]
    name = max(names, key=len) if names else key
    inner_dst, inner_src = dst.get(name), src.get(name)
    if name != key and isinstance(inner_dst, dict) and isinstance(inner_src, dict):
        _take(inner_dst, inner_src, key[len(name) + 1 :])
    elif name in src:
        dst[name] = copy.deepcopy(inner_src)
    else:
        dst.pop(name, None)


def anchors_in(values: Mapping[str, Any]) -> list[str]:
    """The trust-anchor keys a set-config payload names, dotted or nested."""
    return sorted(k for k in leaves(values) if matches(k, TRUST_ANCHORS))


class LiveConfig:
    """The running config and the one way to change it."""

    def __init__(self, cfg: AgentConfig, loader: ConfigLoader | None) -> None:
        self._cfg = cfg
        self._loader = loader
        self._overrides: dict[str, Any] = {}
        self._appliers: list[Applier] = []
        self._lock = threading.Lock()

    @property
    def cfg(self) -> AgentConfig:
        """The config in force now."""
        return self._cfg

    def on_change(self, applier: Applier) -> None:
        """Register a component's prepare step; it runs on every change, before anything takes effect."""
        self._appliers.append(applier)

    def apply(self, values: Mapping[str, Any], origin: Origin) -> dict[str, Any]:
        """Validate and apply a change; ConfigError (and nothing changed) when any part of it fails."""
        if self._loader is None:
            raise AgentError("this agent was started without a config source; set-config is unavailable")
        with self._lock:
            if origin == "command":
                named = anchors_in(values)
                if named:
                    raise ConfigError(
                        f"set-config cannot change {', '.join(named)}: what a device trusts, where it fetches "
                        "from and how it is reached change only in its local config file (then SIGHUP)"
                    )
            overrides = {**self._overrides, **values}
            new = self._loader(overrides)
            changed = config_changes(self._cfg, new)
            if origin == "command":
                drifted = [k for k in changed if matches(k, TRUST_ANCHORS)]
                if drifted:
                    raise ConfigError(
                        f"the local config file changes {', '.join(drifted)}; send SIGHUP to apply it before "
                        "set-config"
                    )
            live = [k for k in changed if matches(k, LIVE_KEYS)]
            restart = [k for k in changed if k not in live]
            commits = [applier(new, live) for applier in self._appliers]
            running = with_keys(self._cfg, new, live)
            for commit in commits:
                if commit is not None:
                    commit()
            self._overrides = overrides
            self._cfg = running
        if restart:
            log.warning("config changes that take effect after a restart: %s", ", ".join(restart))
        log.info("config applied (%s): %s", origin, ", ".join(live) or "no live changes")
        return {"applied": live, "restart_required": restart}
