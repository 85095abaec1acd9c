"""Malformed sensor rows are refused and counted by kind before windowing; no window spans a refused row, a gap or
a jump back in time, a window at the wrong rate is dropped, and a burst of them is logged in one line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest

from edge.sensor.config import InputCheckConfig
from edge.sensor.input_check import BurstReport, MalformedRow, SensorWindower
from shared.window_recipe import SensorChannel, WindowRecipe

RATE = 50.0
PERIOD = 1 / RATE


def recipe(window: int = 4, hop: int = 2) -> WindowRecipe:
    return WindowRecipe(
        sample_rate_hz=RATE, window=window, hop=hop, channels=[SensorChannel(name=n) for n in ("x", "y")],
        mean=[0.0, 0.0], std=[1.0, 1.0],
    )


def feed(w: SensorWindower, rows: Sequence[Sequence[object]]) -> tuple[list[np.ndarray], list[str]]:
    windows: list[np.ndarray] = []
    refused: list[str] = []
    for row in rows:
        try:
            out = w.push(row)
        except MalformedRow as exc:
            refused.append(exc.kind)
            continue
        if out is not None:
            windows.append(out)
    return windows, refused


def stamped(n: int, start: int = 0, period: float = PERIOD) -> list[list[object]]:
    return [[1000 + (start + i) * period, float(start + i), -float(start + i)] for i in range(n)]


TS = InputCheckConfig(timestamp_column=True)


def test_good_rows_with_the_recipe_give_the_recipes_windows() -> None:
    windows, refused = feed(SensorWindower(99, 99, recipe=recipe()), [[i, -i] for i in range(8)])
    assert refused == [] and [w[:, 0].tolist() for w in windows] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]


@pytest.mark.parametrize(
    ("bad", "kind"),
    [([1.0, 2.0, 3.0], "width"), ([1.0], "width"), (["x", 1.0], "non_numeric"), ([True, 1.0], "non_numeric"),
     ([None, 1.0], "non_numeric"), ([float("nan"), 1.0], "nan"), (["inf", 1.0], "nan"), ([], "width")],
)
def test_a_malformed_row_is_refused_and_no_window_spans_it(bad: list[object], kind: str) -> None:
    before: list[list[object]] = [[i, -i] for i in range(5)]
    after: list[list[object]] = [[i, -i] for i in range(5, 12)]
    rows = [*before, bad, *after]
    windows, refused = feed(SensorWindower(99, 99, recipe=recipe()), rows)
    assert refused == [kind]
    # Windows before the bad row, then a fresh start after it: none mixes rows from both sides.
    starts = [int(w[0, 0]) for w in windows]
    assert starts == [0, 5, 7]
    assert all(np.array_equal(w[:, 0], np.arange(s, s + 4)) for s, w in zip(starts, windows, strict=True))


def test_without_a_recipe_the_first_rows_width_holds_across_restarts() -> None:
    windows, refused = feed(SensorWindower(2, 2), [[1, 1], [2, 2, 2], [3, 3, 3], [4, 4], [5, 5]])
    assert refused == ["width", "width"] and [w.tolist() for w in windows] == [[[4, 4], [5, 5]]]


def test_a_row_without_its_timestamp_is_refused() -> None:
    missing: list[object] = [7.0, 7.0]
    rows = [*stamped(3), missing, *stamped(4, 3)]
    windows, refused = feed(SensorWindower(99, 99, TS, recipe()), rows)
    assert refused == ["missing_timestamp"] and [w[:, 0].tolist() for w in windows] == [[3, 4, 5, 6]]
    _, refused = feed(SensorWindower(99, 99, TS, recipe()), [["nan", 1.0, 1.0]])
    assert refused == ["missing_timestamp"]


def test_an_out_of_order_row_restarts_the_window_and_a_reset_clock_is_followed() -> None:
    rows = stamped(3) + [[1000.0, 9.0, 9.0]] + [[1000 + i * PERIOD, 10.0 + i, 0.0] for i in range(1, 5)]
    windows, refused = feed(SensorWindower(99, 99, TS, recipe()), rows)
    assert refused == ["out_of_order"]
    assert [w[:, 0].tolist() for w in windows] == [[11, 12, 13, 14]]


def test_missing_rows_are_a_gap_the_window_does_not_span() -> None:
    rows = stamped(3) + stamped(5, 10)  # rows 3..9 never arrived
    windows, refused = feed(SensorWindower(99, 99, TS, recipe()), rows)
    assert refused == ["gap"]
    assert [w[:, 0].tolist() for w in windows] == [[10, 11, 12, 13]]


def test_a_stream_far_from_the_recorded_rate_gives_no_window() -> None:
    windows, refused = feed(SensorWindower(99, 99, TS, recipe()), stamped(10, period=PERIOD * 0.5))
    assert windows == [] and refused == ["rate"] * 4
    windows, refused = feed(SensorWindower(99, 99, TS, recipe()), stamped(10, period=PERIOD * 1.05))
    assert len(windows) == 4 and refused == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_one_log_line_with_counts_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    report = BurstReport("sensor_mqtt:imu", report_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(40):
            report.record("width", "a row has 3 values, expected 2")
        report.record("nan", "a row holds NaN")
        report.ok()
        report.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "41 malformed" in lines[0] and "width 40" in lines[0] and "nan 1" in lines[0] and "imu" in lines[0]
    assert report.totals["width"] == 40 and report.total == 41


def test_bursts_closer_than_report_s_share_a_line_and_a_long_flood_logs_periodically(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    report = BurstReport("s", report_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        report.record("gap", "g")
        report.ok()  # first burst: logged
        for t in range(1, 5):
            clock.now = t
            report.record("rate", "r")
            report.ok()  # within 10 s of the last line: held
        clock.now = 30
        for _ in range(3):
            report.record("nan", "n")  # the held burst goes out with the next item
        report.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "rate 4, nan 1" in lines[1] and "nan 2" in lines[2] and "8 since start" in lines[2]
