"""Sensor sources check rows against the model's window recipe: malformed input of every kind is counted and logged
per burst, never raised into the reading thread, and never ends up inside a window."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edge.config import SensorCsvSource as CsvConfig
from edge.config import SensorMqttSource as MqttConfig
from edge.sensor.config import InputCheckConfig
from edge.sensor.input_check import Kind
from edge.sources.factory import open_source
from edge.sources.sensor_csv import SensorCsvSource
from edge.sources.sensor_mqtt import SensorMqttSource
from shared.window_recipe import SensorChannel, WindowRecipe

RATE = 100.0


def recipe() -> WindowRecipe:
    return WindowRecipe(
        sample_rate_hz=RATE, window=4, hop=4, channels=[SensorChannel(name=n) for n in ("ax", "ay", "az")],
        mean=[0.0] * 3, std=[1.0] * 3,
    )


def drain(source: SensorMqttSource) -> list[np.ndarray]:
    out = []
    while source.pending:
        frame = source.read()
        assert frame is not None
        out.append(frame.image)
    return out


def test_the_recipe_sets_window_hop_and_width_over_the_configs() -> None:
    source = open_source(MqttConfig(topic="imu", window=2, stride=1))
    assert isinstance(source, SensorMqttSource)
    source.set_recipe(recipe())
    source.on_message("imu", json.dumps([[i, i, i] for i in range(8)]).encode())
    assert [w[:, 0].tolist() for w in drain(source)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    source.on_message("imu", b"[1, 2]")  # the 2-channel readings of the old config no longer fit
    assert source.report.totals["width"] == 1


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"not json", "unreadable"), (b"\xff\xfe", "unreadable"), (b"[" * 5000, "unreadable"),
        (b'{"ax": 1}', "unreadable"), (b"7", "unreadable"), (b"[[1, 2]]", "width"), (b'[["a", 1, 2]]', "non_numeric"),
        (b"[[true, 1, 2]]", "non_numeric"), (b"[[null, 1, 2]]", "non_numeric"), (b"[[NaN, 1, 2]]", "nan"),
        (b"[[Infinity, 1, 2]]", "nan"), (b"[[1e999, 1, 2]]", "nan"), (b"[[[1], 1, 2]]", "non_numeric"),
        (b"[[1, 2, 3], 4]", "non_numeric"),
    ],
)
def test_every_kind_of_malformed_message_is_counted_and_never_raised(payload: bytes, kind: Kind) -> None:
    source = SensorMqttSource("imu", window=99, stride=99, recipe=recipe())
    source.on_message("imu", b"[[0, 0, 0], [1, 1, 1]]")
    source.on_message("imu", payload)
    source.on_message("imu", b"[[2, 2, 2], [3, 3, 3], [4, 4, 4], [5, 5, 5]]")
    assert dict(source.report.totals)[kind] >= 1 and source.skipped == source.report.total
    windows = drain(source)
    # A refused row restarts the window: rows 0-1 never join rows 2-5.
    if kind != "unreadable":
        assert [w[:, 0].tolist() for w in windows] == [[2, 3, 4, 5]]


def test_timestamped_readings_out_of_order_gapped_or_at_the_wrong_rate_give_no_window() -> None:
    checks = InputCheckConfig(timestamp_column=True)
    source = SensorMqttSource("imu", window=99, stride=99, checks=checks, recipe=recipe())

    def rows(start: int, n: int, period: float = 1 / RATE) -> bytes:
        return json.dumps([[100 + (start + i) * period, start + i, 0, 0] for i in range(n)]).encode()

    source.on_message("imu", rows(0, 3))
    source.on_message("imu", rows(1, 1))  # a late duplicate: out of order
    source.on_message("imu", b"[[5, 0, 0]]")  # no timestamp
    source.on_message("imu", rows(20, 8, period=0.5 / RATE))  # twice the recorded rate
    assert drain(source) == []
    source.on_message("imu", rows(200, 3))  # a gap after the fast rows
    source.on_message("imu", rows(210, 4))  # rows 203-209 missing: a gap
    windows = drain(source)
    assert [w[:, 0].tolist() for w in windows] == [[210, 211, 212, 213]]
    totals = source.report.totals
    assert (totals["out_of_order"], totals["missing_timestamp"], totals["rate"], totals["gap"]) == (1, 1, 2, 2)


def test_a_csv_with_a_burst_of_bad_rows_logs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "imu.csv"
    good = "".join(f"{i},{i},{i}\n" for i in range(8))
    path.write_text("ax,ay,az\n" + good + "1,2\n" * 30 + "x,1,1\n" + "nan,1,1\n" + good)
    source = open_source(CsvConfig(path=path, window=2, stride=2))
    assert isinstance(source, SensorCsvSource)
    source.set_recipe(recipe())
    source.open()
    frames = []
    with caplog.at_level(logging.WARNING):
        while (frame := source.read()) is not None:
            frames.append(frame)
        source.close()
    assert len(frames) == 4 and source.skipped == 32
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1
    assert "32 malformed" in lines[0] and "width 30" in lines[0] and "non_numeric 1" in lines[0] and "nan 1" in lines[0]
    assert "line 10" in lines[0]  # where the burst began
