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


@dataclass(frozen=True)
class _Stream:
    """One stream's figures, kept as values so the checks read them, not the report's table."""

    times: list[float]
    before: float
    during: float
    after: float
    ratio: float | None
    errors_added: int
    connected_min: float | None
    connected_end: float | None


def _stream(times: list[float], tel: list[tuple[float, dict[str, float]]], phases: Phases) -> _Stream:
    errors_at_gone = _last_before(tel, phases.unplugged, "source_errors") or 0.0
    errors_end = _last_before(tel, phases.after[1], "source_errors") or 0.0
    connected = _within(tel, (phases.unplugged, phases.back), "connected")
    before, during = rate(times, phases.before), rate(times, phases.gone)
    return _Stream(times, before, during, rate(times, phases.after), _ratio(during, before),
                   int(errors_end - errors_at_gone), min(connected) if connected else None,
                   _last_before(tel, phases.after[1], "connected"))


def judge(events: list[dict[str, Any]], telemetry: list[dict[str, Any]], streams: list[str], gone: str,
          phases: Phases, bin_s: float = 1.0) -> Verdict:
    """Figures and checks of one camera's outage among `streams`."""
    v = Verdict()
    times = result_times(events)
    others = [s for s in streams if s != gone]
    t_gone = phases.unplugged
    per: dict[str, _Stream] = {}
    for s in streams:
        tel = stream_telemetry(telemetry, s)
        st = per[s] = _stream(times.get(s, []), tel, phases)
        v.figures[f"rate_before|{s}"] = round(st.before, 2)
        v.figures[f"rate_gone|{s}"] = round(st.during, 2)
        v.figures[f"rate_after|{s}"] = round(st.after, 2)
        v.figures[f"rate_ratio|{s}"] = st.ratio
        v.figures[f"tel_fps_before|{s}"] = _last_before(tel, t_gone, "processed_fps")
        v.figures[f"tel_fps_gone|{s}"] = _last_before(tel, phases.back, "processed_fps")
        # The last telemetry before the agent was stopped: its goodbye report has every source closed.
        v.figures[f"tel_fps_after|{s}"] = _last_before(tel, phases.after[1], "processed_fps")
        v.figures[f"source_errors_added|{s}"] = st.errors_added
        v.figures[f"connected_min_gone|{s}"] = st.connected_min
        if st.times:
            n = int((phases.after[1] - phases.before[0]) / bin_s)
            edges = [phases.before[0] + i * bin_s for i in range(n)]
            v.series[f"rate|{s}"] = [[round(a - t_gone, 3), rate(st.times, (a, a + bin_s))] for a in edges]
    v.series["gone"] = [[0.0, 0.0], [round(phases.back - t_gone, 3), 0.0]]

    kept = {s: per[s].ratio for s in others}
    worst = min((r for r in kept.values() if r is not None), default=None)
    v.figures["others_min_rate_ratio"] = worst
    v.figures["others_rate_change_pct"] = None if worst is None else round((worst - 1) * 100, 1)
    before_others = [round(per[s].before, 2) for s in others]
    v.figures["others_rate_before"] = round(sum(before_others) / len(before_others), 2) if others else None
    v.checks.append(("others_kept_rate",
                     bool(others) and all(r is not None and r >= KEEP_RATIO for r in kept.values()),
                     "results/s while gone / before: " + ", ".join(f"{s} {r}" for s, r in kept.items())
                     + f" (each must be >= {KEEP_RATIO})"))
    added = {s: per[s].errors_added for s in others}
    v.checks.append(("others_never_reconnected", all(n == 0 for n in added.values()),
                     "capture errors added on the other streams: " + ", ".join(f"{s} {n}" for s, n in added.items())))

    g = per[gone]
    # Rounded as the table shows them, so the check and the figures an operator reads agree.
    gone_before, gone_during = round(g.before, 2), round(g.during, 2)
    v.figures["gone_results_while_gone"] = sum(1 for t in g.times if phases.gone[0] <= t < phases.gone[1])
    v.checks.append(("gone_stream_stalled", gone_before > 0 and gone_during <= STALL_RATIO * gone_before,
                     f"{gone}: {gone_during:.2f} results/s while gone, {gone_before:.2f} before"))
    v.checks.append(("gone_stream_reported", g.connected_min == 0 and g.errors_added > 0,
                     f"{gone} telemetry while gone: connected min {g.connected_min}, capture errors added "
                     f"{g.errors_added}"))

    resumed = [t for t in g.times if t >= phases.back]
    v.figures["reconnect_s"] = round(resumed[0] - phases.back, 3) if resumed else None
    v.checks.append(("gone_stream_resumed", bool(resumed) and g.connected_end == 1,
                     f"{gone}: {len(resumed)} results after the camera came back, telemetry connected "
                     f"{g.connected_end} at the end"))
    return v
