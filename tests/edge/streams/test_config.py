"""`streams:` names several sources; `source:` alone still works as one stream named 'default'."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge.config import AgentConfig
from edge.streams.config import streams_of


def test_source_alone_is_one_stream_named_default_with_its_own_queueing() -> None:
    cfg = AgentConfig.model_validate({"source": {"type": "synthetic", "max_fps": 12, "queue_size": 3}})
    (only,) = streams_of(cfg)
    assert only.name == "default" and only.source == cfg.source
    assert (only.max_fps, only.ring_size, only.policy, only.stale_ms) == (12, 3, "latest", 500.0)
    deep = AgentConfig.model_validate({"source": {"type": "sensor_csv", "path": "-", "queue_size": 1024}})
    assert streams_of(deep)[0].ring_size == 1024  # every queue `source:` takes is a ring a stream takes
    keep_all = AgentConfig.model_validate({"source": {"type": "synthetic", "policy": "all"}})
    assert (streams_of(keep_all)[0].policy, streams_of(keep_all)[0].stale_ms) == ("fifo", None)


def test_named_streams_keep_their_order_and_settings() -> None:
    cfg = AgentConfig.model_validate({"streams": [
        {"name": "gate", "source": {"type": "synthetic", "pattern": "bars"}, "max_fps": 5},
        {"name": "yard", "source": {"type": "image_dir", "path": "/tmp/yard"}, "policy": "fifo", "stale_ms": None},
    ]})
    gate, yard = streams_of(cfg)
    assert (gate.name, gate.max_fps, gate.stale_ms, gate.policy) == ("gate", 5, 500.0, "latest")
    assert (yard.name, yard.source.type, yard.policy, yard.stale_ms) == ("yard", "image_dir", "fifo", None)


@pytest.mark.parametrize(("streams", "message"), [
    ([{"name": "cam", "source": {"type": "synthetic"}}] * 2, "'cam' is used twice"),
    ([{"name": "front/door", "source": {"type": "synthetic"}}], "invalid stream name 'front/door'"),
    ([{"name": "cam", "source": {"type": "synthetic"}, "policy": "newest"}], "policy"),
    ([{"name": "cam", "source": {"type": "synthetic"}, "stale_ms": 0}], "stale_ms"),
    ([{"name": "default", "source": {"type": "synthetic"}}], "'default' is the single source's"),
])
def test_bad_streams_are_refused_with_a_reason(streams: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AgentConfig.model_validate({"streams": streams})


def test_source_and_streams_together_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"either `source:` .* or `streams:`"):
        AgentConfig.model_validate({"source": {"type": "synthetic"},
                                    "streams": [{"name": "cam", "source": {"type": "synthetic"}}]})
