"""The hot path's telemetry reader: orjson and a precomputed check per field instead of the pydantic model.

shared.payloads.TelemetryPayload stays the contract. This reader only ever *accepts* what the contract accepts
(the same bounds, the same metric table); anything it is not sure of (a refusal, a lax coercion the model allows
such as 3.0 for an integer, a number orjson reads differently) returns None, and the ingest asks the model, which
decides and words the refusal. So both paths accept and refuse the same messages (tests/fleet/test_telemetry_reader
checks it on generated payloads), and an honest agent's report costs a dict walk.
"""

from __future__ import annotations

import re
from typing import Any, cast

import orjson

from fleet.registry import TelemetryReading
from shared.metrics import METRICS
from shared.payload_limits import INT64_MAX
from shared.payloads import MAX_CLASS_COUNTS, MAX_ZONE_COUNTS, TelemetryPayload
from shared.streams import MAX_STREAM_FIGURES, MAX_STREAMS, STREAM_METRICS

# Fields of the model this reader checks; a message carrying any other field of the model goes to the model.
_CHECKED = frozenset({"schema_version", "device_id", "boot_id", "seq", "ts", "replayed", "class_counts",
                      "zone_counts", "streams"})
_UNCHECKED = frozenset(TelemetryPayload.model_fields) - _CHECKED
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")
# What shared.payload_limits.clean_text refuses in a label (control characters but tab and newline).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INT64_MIN = -(2**63)
MAX_LABEL = 128
# name -> (lowest, highest, whole numbers only), as shared.metrics.Metric.check reads them.
_FIGURES: dict[str, tuple[float, float, bool]] = {m.name: (*m.bounds, m.number_type == "int") for m in METRICS}
# The same per stream, from shared.streams' table.
_STREAM_FIGURES: dict[str, tuple[float, float, bool]] = {
    m.name: (*m.bounds, m.number_type == "int") for m in STREAM_METRICS}


def _uint64(v: Any) -> bool:
    return type(v) is int and 0 <= v <= INT64_MAX


def _counts(v: Any, limit: int = MAX_CLASS_COUNTS) -> dict[str, int] | None:
    """class_counts (or zone_counts) when every key and count is one the contract takes; None when unsure."""
    if type(v) is not dict or len(v) > limit:
        return None
    for label, count in v.items():
        if not label or len(label) > MAX_LABEL or _CONTROL.search(label) or not _uint64(count):
            return None
    return v


def _figure(v: Any, bounds: tuple[float, float, bool] | None) -> float | None:
    """A figure as both contracts read it (the metric table checks an int as it is, a stream's `dict[str, float]`
    makes a float of it first): a finite number within int64 when an int, within `bounds` by either reading and
    whole where declared so (no bounds: any number); None when unsure."""
    t = type(v)
    if t is float:
        f = v  # orjson reads only finite floats
    elif t is int and _INT64_MIN <= v <= INT64_MAX:
        f = float(v)
    else:
        return None
    if bounds is not None:
        low, high, whole = bounds
        if not low <= f <= high or not low <= v <= high or (whole and not f.is_integer()):
            return None
    return f


def _stream_figures(v: Any) -> dict[str, float] | None:
    """One stream's declared figures as the contract reads them (every value a number, as `dict[str, float]` asks,
    declared ones within the table's bounds, undeclared ones dropped); None when unsure."""
    if type(v) is not dict or len(v) > MAX_STREAM_FIGURES:
        return None
    kept: dict[str, float] = {}
    for name, value in v.items():
        bounds = _STREAM_FIGURES.get(name)
        f = _figure(value, bounds)
        if f is None:
            return None
        if bounds is not None:
            kept[name] = f
    return kept


def _streams(v: Any) -> dict[str, dict[str, float]] | None:
    """A multi-stream agent's `streams` when every name and figure is one the contract takes; None when unsure."""
    if type(v) is not dict or len(v) > MAX_STREAMS:
        return None
    out: dict[str, dict[str, float]] = {}
    for name, figures in v.items():
        if not _IDENT.fullmatch(name):
            return None
        kept = _stream_figures(figures)
        if kept is None:
            return None
        out[name] = kept
    return out


def read_telemetry(payload: bytes) -> TelemetryReading | None:
    """The reading of an honest report, or None: the caller then validates with the pydantic model."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    device, boot, seq, ts = doc.get("device_id"), doc.get("boot_id"), doc.get("seq"), doc.get("ts")
    version = doc.get("schema_version", 1)
    replayed = doc.get("replayed", False)
    if (type(device) is not str or not _IDENT.fullmatch(device) or type(boot) is not str
            or not _TOKEN.fullmatch(boot) or not _uint64(seq) or not _uint64(ts)
            or type(version) is not int or not 0 <= version <= 1000 or type(replayed) is not bool):
        return None
    counts: dict[str, int] | None = {}
    raw_counts = doc.get("class_counts")
    if raw_counts is not None:
        counts = _counts(raw_counts)
        if counts is None:
            return None
    # A detector's zone counts are checked like class counts (the registry does not keep them).
    raw_zones = doc.get("zone_counts")
    if raw_zones is not None and _counts(raw_zones, MAX_ZONE_COUNTS) is None:
        return None
    # A multi-stream agent's per-stream figures, checked against shared.streams' table like the flat ones.
    streams: dict[str, dict[str, float]] | None = None
    raw_streams = doc.get("streams")
    if raw_streams is not None:
        streams = _streams(raw_streams)
        if streams is None:
            return None
    figures: dict[str, float] = {}
    model_version: int | float | None = None
    for name, v in doc.items():
        bounds = _FIGURES.get(name)
        if bounds is None:
            if name in _UNCHECKED:
                return None
            continue  # an envelope field, or undeclared: dropped, as the model drops it
        f = _figure(v, bounds)
        if f is None:
            return None
        figures[name] = f
        if name == "model_version":
            model_version = v
    return TelemetryReading(device_id=device, boot_id=boot, seq=cast(int, seq), ts=cast(int, ts), replayed=replayed,
                            figures=figures, class_counts=counts or {}, model_version=model_version, streams=streams)
