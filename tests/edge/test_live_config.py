"""set-config and SIGHUP: trust anchors only from the local file, and a change applies whole or not at all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from edge.config import AgentConfig
from edge.live_config import TRUST_ANCHORS, LiveConfig, anchors_in, leaves
from shared.config_loader import load_config
from shared.errors import ConfigError

ANCHOR_VALUES: dict[str, Any] = {
    "sync.trusted_keys": ["/tmp/attacker.pub"],
    "sync.allow_unsigned": True,
    "sync.store.uri": "https://attacker.example/store",
    "sync.cache_dir": "/tmp/elsewhere",
    "device.command_keys": ["/tmp/attacker.pub"],
    "device.device_id": "someone-else",
    "mqtt.host": "attacker.example",
    "mqtt.username": "x",
    "mqtt.tls": None,
    "daemon.prometheus_host": "0.0.0.0",
    "daemon.prometheus_port": 9100,
}


class FileConfig:
    """A stand-in for file + env + flags: a mutable base tree plus the overrides the agent passes."""

    def __init__(self, tree: dict[str, Any] | None = None) -> None:
        self.tree: dict[str, Any] = tree or {"source": {"type": "synthetic"}}

    def __call__(self, overrides: Mapping[str, Any]) -> AgentConfig:
        return load_config(AgentConfig, flags={**leaves(self.tree), **overrides}, environ={})


def live_with(loader: FileConfig) -> LiveConfig:
    return LiveConfig(loader({}), loader)


@pytest.mark.parametrize("key", sorted(ANCHOR_VALUES))
def test_a_command_can_change_no_trust_anchor(key: str) -> None:
    live = live_with(FileConfig())
    before = live.cfg
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        live.apply({key: ANCHOR_VALUES[key]}, "command")
    assert live.cfg == before


def test_nested_values_are_checked_like_dotted_ones() -> None:
    live = live_with(FileConfig())
    with pytest.raises(ConfigError, match=r"sync\.allow_unsigned"):
        live.apply({"sync": {"allow_unsigned": True}}, "command")
    assert anchors_in({"mqtt": {"tls": {"insecure": True}}}) == ["mqtt.tls.insecure"]


def test_every_listed_anchor_is_a_real_config_key() -> None:
    keys = set(_leaf_keys(AgentConfig().model_dump(mode="json"))) | {"mqtt.tls.ca_file", "sync.store.uri"}
    for anchor in TRUST_ANCHORS:
        assert any(k == anchor or k.startswith(anchor.rstrip(".") + ".") for k in keys), anchor


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in tree.items():
        out.extend(_leaf_keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) and v else [f"{prefix}{k}"])
    return out


def test_the_local_file_and_reload_may_change_anchors(tmp_path: Path) -> None:
    loader = FileConfig()
    live = live_with(loader)
    loader.tree = {**loader.tree, "sync": {"allow_unsigned": True}}
    result = live.apply({}, "reload")
    assert result["applied"] == ["sync.allow_unsigned"] and live.cfg.sync.allow_unsigned


def test_set_config_refuses_while_the_file_has_unapplied_anchor_changes() -> None:
    loader = FileConfig()
    live = live_with(loader)
    loader.tree = {**loader.tree, "sync": {"allow_unsigned": True}}
    with pytest.raises(ConfigError, match="SIGHUP"):
        live.apply({"events.mode": "every"}, "command")
    assert not live.cfg.sync.allow_unsigned and live.cfg.events.mode == "change"


def test_a_failing_part_changes_nothing_and_later_changes_still_work() -> None:
    live = live_with(FileConfig())
    committed: list[str] = []

    def keys(new: AgentConfig, changed: list[str]) -> Callable[[], None] | None:
        if new.events.mode == "threshold":
            raise ConfigError("key file /missing.pub not found")
        return lambda: committed.append(new.events.mode)

    live.on_change(keys)
    with pytest.raises(ConfigError, match="missing"):
        live.apply({"events.mode": "threshold"}, "command")
    assert live.cfg.events.mode == "change" and committed == []
    assert live.apply({"events.mode": "every"}, "command")["applied"] == ["events.mode"]
    assert committed == ["every"] and live.cfg.events.mode == "every"
    # The refused value is not remembered: a reload does not bring it back.
    live.apply({}, "reload")
    assert live.cfg.events.mode == "every"


def test_restart_only_keys_keep_reporting_until_restart() -> None:
    live = live_with(FileConfig())
    first = live.apply({"source.queue_size": 9}, "command")
    assert first == {"applied": [], "restart_required": ["source.queue_size"]}
    assert live.cfg.source.queue_size != 9
    again = live.apply({"events.mode": "every"}, "command")
    assert again["restart_required"] == ["source.queue_size"]


def test_bad_values_are_refused_whole() -> None:
    live = live_with(FileConfig())
    with pytest.raises(ConfigError):
        live.apply({"events.mode": "every", "sync.poll_interval_s": "inf"}, "command")
    assert live.cfg.events.mode == "change"


SQUARE = [[0, 0], [10, 0], [10, 10]]


def test_detection_settings_apply_live_zones_added_and_removed_labels_with_dots_included() -> None:
    loader = FileConfig({"source": {"type": "synthetic"},
                         "detection": {"zones": {"door": {"coordinates": SQUARE}},
                                       "filters": {"person": {"min_score": 0.7}}}})
    live = live_with(loader)
    seen: list[list[str]] = []
    live.on_change(lambda new, keys: seen.append(keys) or None)  # type: ignore[func-returns-value]
    result = live.apply({"detection.zones": {"lane": {"coordinates": SQUARE, "inertia": 2}},
                         "detection.filters": {"traffic.light": {"min_score": 0.4}, "car": {"min_score": 0.9}}},
                        "command")
    assert result["restart_required"] == [] and all(k.startswith("detection.") for k in result["applied"])
    assert set(live.cfg.detection.zones) == {"lane"} and live.cfg.detection.zones["lane"].inertia == 2
    assert {k: f.min_score for k, f in live.cfg.detection.filters.items()} == {"traffic.light": 0.4, "car": 0.9}
    assert seen and seen[-1] == result["applied"]
    # And back: the dotted label's filter goes away whole.
    live.apply({"detection.filters": {"person": {"min_score": 0.7}}}, "command")
    assert {k: f.min_score for k, f in live.cfg.detection.filters.items()} == {"person": 0.7}


def test_a_command_cannot_move_the_snapshot_directory() -> None:
    live = live_with(FileConfig())
    with pytest.raises(ConfigError, match=r"detection\.snapshots\.dir"):
        live.apply({"detection.snapshots.dir": "/home"}, "command")
