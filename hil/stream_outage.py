"""Reads one camera's outage out of what a multi-stream agent published: per-stream result rates (from the result
events' production times) and per-stream telemetry, before, while and after one stream's camera was gone. Pure
logic: the scenario (hil.scenarios.multi_camera_gone) collects the payloads, this judges them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.streams import DEFAULT_STREAM

# The other streams "kept their rate" when each still made at least this share of its results per second while the
# camera was gone (generous: a loaded 2-core box jitters; losing a camera should free time, never take it).
KEEP_RATIO = 0.5
# The gone stream "stalled" when it made at most this share of its earlier rate while its camera was gone.
STALL_RATIO = 0.1

Window = tuple[float, float]


@dataclass(frozen=True)
class Phases:
    """Unix seconds of the run's phases, as the scenario saw them."""

    before: Window  # every camera up
    unplugged: float  # the camera was stopped
    gone: Window  # the camera unplugged, after a grace for frames already in flight
    back: float  # the camera started again
    after: Window  # after the gone stream resumed (or the wait for it ended), to just before the agent's stop


@dataclass
class Verdict:
    """Figures (flat names for the report's table; `figure|stream` per stream), checks and plot series."""

    figures: dict[str, float | int | str | bool | None] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    series: dict[str, list[list[float]]] = field(default_factory=dict)


def result_times(events: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Production time (Unix s) of every result event, per stream, sorted; events without `after` are not results."""
    out: dict[str, list[float]] = {}
    for e in events:
        if e.get("after") and "ts" in e:
            out.setdefault(str(e.get("stream", DEFAULT_STREAM)), []).append(int(e["ts"]) / 1000)
    return {k: sorted(v) for k, v in out.items()}


def rate(times: list[float], window: Window) -> float:
    """Results per second within [start, end)."""
    start, end = window
    if end <= start:
        return 0.0
    return sum(1 for t in times if start <= t < end) / (end - start)


def stream_telemetry(bodies: list[dict[str, Any]], stream: str) -> list[tuple[float, dict[str, float]]]:
    """(Unix s, figures) of one stream from telemetry bodies, in production order."""
    out = [(int(b["ts"]) / 1000, dict((b.get("streams") or {}).get(stream) or {})) for b in bodies if "ts" in b]
    return sorted((t, f) for t, f in out if f)


def _last_before(tel: list[tuple[float, dict[str, float]]], t: float, name: str) -> float | None:
    values = [f[name] for ts, f in tel if ts < t and name in f]
    return values[-1] if values else None


def _within(tel: list[tuple[float, dict[str, float]]], window: Window, name: str) -> list[float]:
    return [f[name] for ts, f in tel if window[0] <= ts < window[1] and name in f]


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 3) if den > 0 else None


def judge(events: list[dict[str, Any]], telemetry: list[dict[str, Any]], streams: list[str], gone: str,
          phases: Phases, bin_s: float = 1.0) -> Verdict:
    """Figures and checks of one camera's outage among `streams`."""
    v = Verdict()
    times = result_times(events)
    others = [s for s in streams if s != gone]
    t_gone = phases.unplugged
    ratios: dict[str, float | None] = {}
    for s in streams:
        ts = times.get(s, [])
        before, during, after = rate(ts, phases.before), rate(ts, phases.gone), rate(ts, phases.after)
        v.figures[f"rate_before|{s}"] = round(before, 2)
        v.figures[f"rate_gone|{s}"] = round(during, 2)
        v.figures[f"rate_after|{s}"] = round(after, 2)
        ratios[s] = _ratio(during, before)
        v.figures[f"rate_ratio|{s}"] = ratios[s]
        tel = stream_telemetry(telemetry, s)
        v.figures[f"tel_fps_before|{s}"] = _last_before(tel, t_gone, "processed_fps")
        v.figures[f"tel_fps_gone|{s}"] = _last_before(tel, phases.back, "processed_fps")
        # The last telemetry before the agent was stopped: its goodbye report has every source closed.
        v.figures[f"tel_fps_after|{s}"] = _last_before(tel, phases.after[1], "processed_fps")
        errors_at_gone = _last_before(tel, t_gone, "source_errors") or 0.0
        errors_end = _last_before(tel, phases.after[1], "source_errors") or 0.0
        v.figures[f"source_errors_added|{s}"] = int(errors_end - errors_at_gone)
        connected = _within(tel, (t_gone, phases.back), "connected")
        v.figures[f"connected_min_gone|{s}"] = min(connected) if connected else None
        if ts:
            n = int((phases.after[1] - phases.before[0]) / bin_s)
            edges = [phases.before[0] + i * bin_s for i in range(n)]
            v.series[f"rate|{s}"] = [[round(a - t_gone, 3), rate(ts, (a, a + bin_s))] for a in edges]
    v.series["gone"] = [[0.0, 0.0], [round(phases.back - t_gone, 3), 0.0]]

    kept = {s: r for s, r in ratios.items() if s in others}
    worst = min((r for r in kept.values() if r is not None), default=None)
    v.figures["others_min_rate_ratio"] = worst
    v.figures["others_rate_change_pct"] = None if worst is None else round((worst - 1) * 100, 1)
    before_others = [float(v.figures[f"rate_before|{s}"] or 0) for s in others]
    v.figures["others_rate_before"] = round(sum(before_others) / len(before_others), 2) if others else None
    v.checks.append(("others_kept_rate",
                     bool(others) and all(r is not None and r >= KEEP_RATIO for r in kept.values()),
                     "results/s while gone / before: " + ", ".join(f"{s} {r}" for s, r in kept.items())
                     + f" (each must be >= {KEEP_RATIO})"))
    added = {s: v.figures[f"source_errors_added|{s}"] for s in others}
    v.checks.append(("others_never_reconnected", all(n == 0 for n in added.values()),
                     "capture errors added on the other streams: " + ", ".join(f"{s} {n}" for s, n in added.items())))

    gone_times = times.get(gone, [])
    gone_before = float(v.figures[f"rate_before|{gone}"] or 0)
    gone_during = float(v.figures[f"rate_gone|{gone}"] or 0)
    v.figures["gone_rate_before"] = round(gone_before, 2)
    v.figures["gone_results_while_gone"] = sum(1 for t in gone_times if phases.gone[0] <= t < phases.gone[1])
    v.checks.append(("gone_stream_stalled", gone_before > 0 and gone_during <= STALL_RATIO * gone_before,
                     f"{gone}: {gone_during:.2f} results/s while gone, {gone_before:.2f} before"))
    conn_min = v.figures[f"connected_min_gone|{gone}"]
    errs = v.figures[f"source_errors_added|{gone}"]
    v.figures["gone_connected_min"] = conn_min
    v.figures["gone_source_errors_added"] = errs
    v.checks.append(("gone_stream_reported", conn_min == 0 and isinstance(errs, int) and errs > 0,
                     f"{gone} telemetry while gone: connected min {conn_min}, capture errors added {errs}"))

    resumed = [t for t in gone_times if t >= phases.back]
    v.figures["reconnect_s"] = round(resumed[0] - phases.back, 3) if resumed else None
    v.figures["gone_rate_after"] = v.figures[f"rate_after|{gone}"]
    tel_gone = stream_telemetry(telemetry, gone)
    connected_end = _last_before(tel_gone, phases.after[1], "connected")
    v.checks.append(("gone_stream_resumed", bool(resumed) and connected_end == 1,
                     f"{gone}: {len(resumed)} results after the camera came back, telemetry connected "
                     f"{connected_end} at the end"))
    return v
