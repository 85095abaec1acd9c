"""The streams an agent serves: `streams:` as configured, or the single `source:` as one stream named 'default'."""

from __future__ import annotations

from edge.config import AgentConfig, StreamConfig
from shared.streams import DEFAULT_STREAM


def streams_of(cfg: AgentConfig) -> list[StreamConfig]:
    """Every stream of the config, in config order; `source:` alone is one stream with the source's own queueing."""
    if cfg.streams:
        return list(cfg.streams)
    source = cfg.source
    # policy 'all' promises every frame: a FIFO that never drops for age; 'latest' keeps the staleness cap.
    every = source.policy == "all"
    return [StreamConfig(name=DEFAULT_STREAM, source=source, max_fps=source.max_fps, ring_size=source.queue_size,
                         policy="fifo" if every else "latest", stale_ms=None if every else 500.0)]
