"""The streams an agent serves (`streams:` as configured, or the single `source:` as one stream named 'default'), and
each stream's own detection settings."""

from __future__ import annotations

from edge.config import AgentConfig, StreamConfig
from edge.detection.config import DetectionConfig
from edge.served_models import streams_by_model
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


def model_streams(cfg: AgentConfig) -> dict[str, list[StreamConfig]]:
    """Each model's streams, in config order (edge.served_models.streams_by_model); `source:` alone is sync.model's
    one stream."""
    streams = streams_of(cfg)
    names = streams_by_model(cfg.sync.model, {s.name: s.model for s in streams})
    by_name = {s.name: s for s in streams}
    return {model: [by_name[n] for n in mine] for model, mine in names.items()}


def stream_detection(cfg: AgentConfig) -> dict[str, DetectionConfig]:
    """Detection settings of the streams that have their own (zones or a whole `detection:`), by stream name.

    Snapshots stay the agent-wide ones: one directory, one disk budget, and a stream entry (which set-config may
    change) can never point the snapshot store elsewhere.
    """
    out: dict[str, DetectionConfig] = {}
    for stream in cfg.streams:
        if stream.detection is None and stream.zones is None:
            continue
        base = stream.detection or cfg.detection
        tree = base.model_dump()
        tree["snapshots"] = cfg.detection.snapshots.model_dump()
        if stream.zones is not None:
            tree["zones"] = {name: zone.model_dump() for name, zone in stream.zones.items()}
        out[stream.name] = DetectionConfig.model_validate(tree)
    return out
