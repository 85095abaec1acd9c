"""The stream contract: how a device names its streams and which per-stream figures its telemetry may carry.

One agent serves several cameras or sensors ("streams"). Results and events carry the stream's name so a reader
can tell cameras apart (Frigate puts the camera in every event); a payload from an agent older than streams has
none and reads as the stream named `default`. Per-stream figures ride in telemetry's `streams` object, keyed by
stream name, each figure declared here like the flat ones in shared.metrics.
"""

from __future__ import annotations

from shared.metrics import Metric
from shared.names import check_ident

# The stream a single `source:` serves, and the one old payloads (without a stream) belong to.
DEFAULT_STREAM = "default"
# Streams one device may report; a telemetry payload naming more is refused.
MAX_STREAMS = 64
# Figures one stream may report (room for a newer agent's, which a reader drops).
MAX_STREAM_FIGURES = 256


def check_stream_name(name: str) -> str:
    """Return name if it can appear in payloads and topics (no '/', '+', '#', spaces); InvalidNameError otherwise."""
    return check_ident(name, "stream name")


def check_unique_streams(names: list[str]) -> list[str]:
    """The names, each valid and none twice; ValueError naming the first repeat."""
    seen: set[str] = set()
    for name in names:
        check_stream_name(name)
        if name in seen:
            raise ValueError(f"stream name {name!r} is used twice; every stream needs its own name")
        seen.add(name)
    return names


def zone_key(stream: str, key: str) -> str:
    """A telemetry zone_counts key of one stream's zone ('zone' or 'zone/label'): '<stream>:<key>', the single
    stream's unprefixed as before. Two cameras may each have a zone 'door'; their counts must not add up."""
    return key if stream == DEFAULT_STREAM else f"{stream}:{key}"


def split_zone_key(key: str) -> tuple[str, str]:
    """(stream, 'zone' or 'zone/label') of a zone_counts key; a key without a stream is the single stream's.

    Unambiguous: stream and zone names never hold ':' or '/', so a ':' before the first '/' ends the stream name.
    """
    stream, colon, _ = key.split("/", 1)[0].partition(":")
    if not colon:
        return DEFAULT_STREAM, key
    return stream, key[len(stream) + 1:]


def _percentile_rows(stem: str, title: str, what: str, ps: tuple[int, ...]) -> list[Metric]:
    return [Metric(f"{stem}_ms_p{p}", "ms", f"{p}th percentile of {what} over the stream's last frames",
                   ha_device_class="duration", title=f"{title} p{p}") for p in ps]


STREAM_METRICS: tuple[Metric, ...] = (
    Metric("capture_fps", "frames/s", "Frames the stream's source delivered per second", title="Capture rate"),
    Metric("processed_fps", "frames/s", "Frames of the stream inferred per second", title="Processed rate"),
    Metric("frames", "frames", "Frames of the stream inferred since boot", "counter", title="Frames inferred"),
    Metric("skipped", "frames", "Frames overwritten in the stream's ring by a newer one before inference (policy "
           "'latest') or discarded by its fps cap, since boot", "counter", title="Frames skipped"),
    Metric("stale", "frames", "Frames dropped because they waited longer than the stream's staleness cap, since boot",
           "counter", title="Stale frames"),
    Metric("source_errors", "errors", "Read failures, stalls and failed reconnects of the stream since boot",
           "counter", title="Capture errors"),
    Metric("connected", "", "1 while the stream's source is open and delivering, 0 while it reconnects",
           title="Connected", value_type="int", high=1.0),
    Metric("model_version", "", "Version of the model serving the stream (sync.model, or the one its `model:` "
           "names); 0 while none serves", title="Model version", value_type="int"),
    *_percentile_rows("queue_age", "Queue age", "the time a frame waited between capture and inference", (50, 99)),
    *_percentile_rows("e2e", "End-to-end", "capture-to-published time", (50, 95, 99)),
)

STREAM_BY_NAME: dict[str, Metric] = {m.name: m for m in STREAM_METRICS}


def check_stream_figures(figures: dict[str, object]) -> dict[str, float]:
    """One stream's declared figures, checked; a figure the table does not declare is left out (a newer agent's)."""
    return {name: STREAM_BY_NAME[name].check(value) for name, value in figures.items() if name in STREAM_BY_NAME}
