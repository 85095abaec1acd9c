"""Judging one camera's outage from what a multi-stream agent published: the others' rate, the gone stream's stall,
its telemetry saying so, and its return; each check fails when the payloads show the opposite."""

from __future__ import annotations

from typing import Any

from hil.stream_outage import Phases, judge, rate, result_times

STREAMS = ["cam0", "cam1", "cam2"]
GONE = "cam1"
T0 = 1_000_000.0
# before 0-5 s, unplugged at 5 s (grace 1 s), back at 12 s, resumed 13 s, stopped at 18 s
PHASES = Phases(before=(T0, T0 + 5), unplugged=T0 + 5, gone=(T0 + 6, T0 + 12), back=T0 + 12, after=(T0 + 13, T0 + 18))


def event(stream: str, t: float) -> dict[str, Any]:
    return {"ts": int(t * 1000), "type": "frame", "stream": stream,
            "after": {"label": "1", "score": 0.9, "frame": 0, "model_version": 1}}


def events(stream: str, start: float, end: float, fps: float) -> list[dict[str, Any]]:
    n = int((end - start) * fps)
    return [event(stream, T0 + start + i / fps) for i in range(n)]


def telemetry(t: float, per_stream: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"ts": int((T0 + t) * 1000), "frames": 0, "streams": per_stream}


def healthy(gone_fps_during: float = 0.0, others_during: float = 10.0, resumes: bool = True,
            reconnects: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    evs: list[dict[str, Any]] = []
    for s in STREAMS:
        if s == GONE:
            evs += events(s, 0, 5.2, 10)  # a few in flight just after the unplug
            evs += events(s, 6, 12, gone_fps_during) if gone_fps_during else []
            evs += events(s, 13, 18, 10) if resumes else []
        else:
            evs += events(s, 0, 5, 10) + events(s, 5, 12, others_during) + events(s, 12, 18, 10)
    tel = []
    for i in range(36):
        t = i * 0.5
        down = 5.5 <= t < 13 or (t >= 13 and not resumes)
        tel.append(telemetry(t, {s: {"processed_fps": 0.0 if (s == GONE and down) else 10.0,
                                     "connected": 0.0 if (s == GONE and down and reconnects) else 1.0,
                                     "source_errors": float(int(t) - 4 if s == GONE and t > 5 and reconnects
                                                            else 0)} for s in STREAMS}))
    # The agent's goodbye report: every source closed. It must not read as "the camera never came back".
    tel.append(telemetry(18.5, {s: {"processed_fps": 10.0, "connected": 0.0, "source_errors": 99.0}
                                for s in STREAMS}))
    return evs, tel


def checks(evs: list[dict[str, Any]], tel: list[dict[str, Any]]) -> dict[str, tuple[bool, str]]:
    return {name: (met, detail) for name, met, detail in judge(evs, tel, STREAMS, GONE, PHASES).checks}


def test_rate_counts_results_per_second_inside_the_window_only() -> None:
    times = result_times([*events("a", 0, 10, 4), {"ts": 5, "stream": "a"}])  # no `after`: not a result
    assert len(times["a"]) == 40
    assert rate(times["a"], (T0 + 2, T0 + 4)) == 4.0
    assert rate(times["a"], (T0 + 4, T0 + 4)) == 0.0


def test_a_clean_outage_passes_every_check_with_the_rates_it_saw() -> None:
    evs, tel = healthy()
    verdict = judge(evs, tel, STREAMS, GONE, PHASES)
    assert all(met for _, met, _ in verdict.checks), verdict.checks
    f = verdict.figures
    assert f["rate_before|cam0"] == 10.0 and f["rate_gone|cam0"] == 10.0 and f["others_min_rate_ratio"] == 1.0
    assert f["gone_results_while_gone"] == 0 and f["connected_min_gone|cam1"] == 0.0
    assert f["source_errors_added|cam1"] == 13  # up to the last report before the stop, not the goodbye's 99
    assert f["reconnect_s"] == 1.0 and f["rate_after|cam1"] == 10.0
    assert f["source_errors_added|cam0"] == 0
    assert [p[1] for p in verdict.series["rate|cam1"]][6:12] == [0.0] * 6
    assert verdict.series["gone"][1][0] == 7.0


def test_other_streams_slowed_down_by_the_outage_fail_and_are_named() -> None:
    evs, tel = healthy(others_during=3.0)
    met, detail = checks(evs, tel)["others_kept_rate"]
    assert not met and "cam0 0.3" in detail and "cam2 0.3" in detail


def test_results_from_a_camera_that_was_gone_fail_the_stall_check() -> None:
    evs, tel = healthy(gone_fps_during=10.0)
    assert not checks(evs, tel)["gone_stream_stalled"][0]


def test_telemetry_that_never_showed_the_stream_down_fails() -> None:
    evs, tel = healthy(reconnects=False)
    met, detail = checks(evs, tel)["gone_stream_reported"]
    assert not met and "connected min 1.0" in detail


def test_a_stream_that_never_came_back_fails_resumed() -> None:
    evs, tel = healthy(resumes=False)
    met, detail = checks(evs, tel)["gone_stream_resumed"]
    assert not met and "0 results after the camera came back" in detail


def test_the_gone_stream_s_figures_appear_once_under_its_own_name() -> None:
    evs, tel = healthy()
    f = judge(evs, tel, STREAMS, GONE, PHASES).figures
    copies = {k for k in f if k.startswith("gone_") and k.removeprefix("gone_") in
              {"rate_before", "rate_after", "connected_min", "source_errors_added"}}
    assert not copies, f"the table already shows these per stream: {sorted(copies)}"
    assert f["rate_before|cam1"] == 10.0 and f["rate_after|cam1"] == 10.0
