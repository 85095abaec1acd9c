"""Every source kind yields Frames through the one interface; bad input is skipped and counted or refused clearly."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import (
    CameraSource,
    ImageDirSource,
    SensorCsvSource,
    SensorMqttSource,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
)
from edge.errors import SourceError
from edge.sources.base import Frame, FrameSource
from edge.sources.factory import open_source
from edge.sources.opencv_source import OpenCvSource, redact_url
from edge.sources.sensor_csv import SensorCsvSource as CsvSource
from edge.sources.sensor_mqtt import SensorMqttSource as MqttSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.sources.synthetic import digit_of, draw
from edge.sources.windowing import RowWindow
from tests.edge.media import frame_level, level, write_video
from tests.fixtures.ports import free_port


def read_all(source: FrameSource, limit: int = 1000) -> list[Frame]:
    source.open()
    frames = []
    try:
        while len(frames) < limit:
            frame = source.read()
            if frame is None:
                break
            frames.append(frame)
    finally:
        source.close()
    return frames


# --- video files, cameras, streams -------------------------------------------------------------------------


def test_video_file_yields_every_frame_in_order_then_ends(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 12)
    frames = read_all(open_source(VideoFileSource(path=path)))
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [frame_level(f.image) for f in frames] == pytest.approx([level(i) for i in range(12)], abs=3)
    assert frames[0].source == f"file:{path}"
    assert frames[0].captured_at < frames[-1].captured_at


def test_looping_video_restarts_and_keeps_counting(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 5)
    source = open_source(VideoFileSource(path=path, loop=True))
    frames = read_all(source, limit=12)
    assert [f.index for f in frames] == list(range(12))
    assert [frame_level(f.image) for f in frames] == pytest.approx([level(i % 5) for i in range(12)], abs=3)


def test_reopened_video_resumes_where_it_stopped(tmp_path: Path) -> None:
    source = OpenCvSource("file", str(write_video(tmp_path / "clip.avi", 8)))
    source.open()
    first = [source.read() for _ in range(3)]
    source.close()
    source.open()  # what capture does after a read error
    rest = []
    while (frame := source.read()) is not None:
        rest.append(frame)
    assert [f.index for f in first + rest if f] == list(range(8))
    assert frame_level(rest[0].image) == pytest.approx(level(3), abs=3)


def test_missing_or_undecodable_video_is_refused_at_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(VideoFileSource(path=tmp_path / "nope.avi")).open()
    junk = tmp_path / "junk.avi"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(SourceError, match=r"junk\.avi"):
        open_source(VideoFileSource(path=junk)).open()


def test_missing_camera_and_unreachable_stream_are_refused_clearly() -> None:
    with pytest.raises(SourceError, match="/dev/video97 does not exist"):
        open_source(CameraSource(device="/dev/video97")).open()
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/live"
    source = open_source(StreamSource(url=url))
    with pytest.raises(SourceError, match="cannot open stream") as err:
        source.open()
    assert "secret" not in str(err.value) and "secret" not in source.name


def test_redact_url_hides_credentials_only() -> None:
    assert redact_url("rtsp://u:p@cam.local:554/s?x=1") == "rtsp://***@cam.local:554/s?x=1"
    assert redact_url("http://cam.local/mjpg") == "http://cam.local/mjpg"


# --- image directories -------------------------------------------------------------------------------------


def test_image_dir_reads_in_name_order_and_skips_corrupt_files(tmp_path: Path) -> None:
    import cv2

    for i, name in enumerate(["b.png", "a.png", "d.jpg"]):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 40 * (i + 1), dtype=np.uint8))
    (tmp_path / "c.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    source = open_source(ImageDirSource(path=tmp_path))
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [frame_level(f.image) for f in frames] == pytest.approx([80, 40, 120], abs=3)  # a, b, d
    assert all(f.image.shape == (20, 30, 3) for f in frames)
    assert source.skipped == 1


def test_image_dir_that_is_missing_or_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(ImageDirSource(path=tmp_path / "none")).open()
    with pytest.raises(SourceError, match="holds no"):
        open_source(ImageDirSource(path=tmp_path)).open()


def test_looping_image_dir_of_only_corrupt_files_ends_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"junk")
    source = open_source(ImageDirSource(path=tmp_path, loop=True))
    assert read_all(source) == []
    assert source.skipped >= 1


# --- synthetic ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["digits", "bars", "noise"])
def test_synthetic_frames_are_deterministic_and_bounded(pattern: str) -> None:
    cfg = SyntheticSource(pattern=pattern, width=40, height=32, fps=None, frames=12)  # type: ignore[arg-type]
    a, b = read_all(open_source(cfg)), read_all(open_source(cfg))
    assert len(a) == 12 and [f.index for f in a] == list(range(12))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert a[0].image.shape == (32, 40, 3) and a[0].image.dtype == np.uint8
    assert not np.array_equal(a[0].image, a[1].image)


def test_synthetic_digits_cycle_through_0_to_9() -> None:
    frames = [draw("digits", i, 48, 48) for i in range(20)]
    assert [digit_of(i) for i in range(12)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert all(np.array_equal(frames[i], frames[i + 10]) for i in range(10))
    assert len({frames[i].tobytes() for i in range(10)}) == 10
    # A white glyph on black, roughly centred, as an MNIST-style model expects.
    ys, xs = np.nonzero(frames[7][:, :, 0])
    assert 0.3 < ys.mean() / 48 < 0.7 and 0.3 < xs.mean() / 48 < 0.7


def test_interrupt_cuts_a_paced_wait_short() -> None:
    source = Synthetic("bars", fps=0.01)  # the second frame is due in 100 s
    source.open()
    assert source.read() is not None
    threading.Timer(0.05, source.interrupt).start()
    assert source.read() is None


# --- sensor windows ----------------------------------------------------------------------------------------


def test_row_window_emits_every_stride_rows_once_full() -> None:
    w = RowWindow(window=4, stride=2)
    out = [w.push([i, 10 * i]) for i in range(10)]
    emitted = [o for o in out if o is not None]
    assert [int(o[0, 0]) for o in emitted] == [0, 2, 4, 6]
    assert all(o.shape == (4, 2) and o.dtype == np.float32 for o in emitted)
    assert np.array_equal(emitted[1][:, 1], [20, 30, 40, 50])


def test_row_window_with_stride_beyond_window_skips_rows() -> None:
    w = RowWindow(window=2, stride=3)
    starts = [int(o[0, 0]) for i in range(10) if (o := w.push([i])) is not None]
    assert starts == [0, 3, 6]


def test_row_window_refuses_rows_that_do_not_belong() -> None:
    w = RowWindow(window=3, stride=1)
    w.push([1.0, 2.0])
    with pytest.raises(ValueError, match="has 3 values, earlier rows had 2"):
        w.push([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        w.push([float("nan"), 1.0])


CSV = "t,x,y\n" + "".join(f"{i},{i * 0.5},{-i}\n" for i in range(6)) + "3,oops,1\n" + "6,3.0,-6\n\n7,3.5,-7\n"


def test_sensor_csv_file_windows_with_stride_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "imu.csv"
    path.write_text(CSV)
    source = open_source(SensorCsvSource(path=path, window=4, stride=2))
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1]
    assert all(f.image.shape == (4, 3) and f.image.dtype == np.float32 for f in frames)
    # The 'oops' row restarts the window: [4, 5, 6, 7] would span it, so it is never produced.
    assert [f.image[:, 0].tolist() for f in frames] == [[0, 1, 2, 3], [2, 3, 4, 5]]
    assert source.skipped == 1  # the 'oops' row; the header and the blank line are not errors


def test_sensor_csv_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(SensorCsvSource(path=tmp_path / "none.csv")).open()


def _write_lines_then_close(fd: int, text: str) -> threading.Thread:
    def writer() -> None:
        with os.fdopen(fd, "w") as f:
            for line in text.splitlines(keepends=True):
                f.write(line)
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    return t


def test_sensor_csv_reads_a_line_stream_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    stdin = io.TextIOWrapper(os.fdopen(r, "rb"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    writer = _write_lines_then_close(w, "".join(f"{i}\n" for i in range(9)))
    source = open_source(SensorCsvSource(path=Path("-"), window=3, stride=3))
    frames = read_all(source)
    writer.join()
    assert source.name == "sensor_csv:stdin"
    assert [f.image[:, 0].tolist() for f in frames] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert not stdin.closed  # stdin belongs to the process, not the source


def test_sensor_csv_reads_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "sensor.fifo"
    os.mkfifo(fifo)
    source = CsvSource(fifo, window=2, stride=1)
    source.open()  # must not block waiting for a writer

    def writer() -> None:
        with open(fifo, "w") as f:
            f.write("1,1\n2,2\n3,3\n")

    t = threading.Thread(target=writer)
    t.start()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    t.join()
    source.close()
    assert [f.image[:, 0].tolist() for f in frames] == [[1, 2], [2, 3]]


def test_sensor_feed_windows_readings_and_wakes_the_reader() -> None:
    source = open_source(SensorMqttSource(topic="plant/imu", window=3, stride=2))
    assert isinstance(source, MqttSource)
    source.open()
    got: list[Frame | None] = []
    reader = threading.Thread(target=lambda: got.append(source.read()))
    reader.start()
    assert source.feed([1.0, 10.0]) == 0
    assert source.feed([[2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]]) == 2
    reader.join(5)
    assert got and got[0] is not None and got[0].image.tolist() == [[1, 10], [2, 20], [3, 30]]
    second = source.read()
    assert second is not None and second.index == 1 and second.image[:, 0].tolist() == [3, 4, 5]
    assert second.source == "sensor_mqtt:plant/imu"


def test_sensor_feed_refuses_malformed_readings_counts_them_and_keeps_the_rest() -> None:
    source = MqttSource("t", window=2, stride=1)
    source.feed([1.0, 2.0])
    assert source.feed([[1.0, 2.0, 3.0], ["a", "b"], [3.0, 4.0], [5.0, 6.0]]) == 1
    assert source.skipped == 2 and source.report.totals["width"] == 1 and source.report.totals["non_numeric"] == 1
    frame = source.read()
    assert frame is not None and frame.image.tolist() == [[3, 4], [5, 6]]  # no window spans the refused rows
    threading.Timer(0.05, source.interrupt).start()
    assert source.read() is None  # interrupted while waiting: end of stream


class _Subscriptions:
    """Records what a source subscribes, like the broker link would."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.retained: dict[str, bool] = {}

    def subscribe(self, topic_filter: str, handler: Any, *, retained: bool = True) -> None:
        self.handlers[topic_filter] = handler
        self.retained[topic_filter] = retained


def test_mqtt_sensor_source_subscribes_itself_to_live_readings_only() -> None:
    source = MqttSource("plant/imu", window=2, stride=2)
    link = _Subscriptions()
    source.attach(link)
    assert link.retained == {"plant/imu": False}
    link.handlers["plant/imu"]("plant/imu", b"[[1, 2], [3, 4]]")
    frame = source.read()
    assert frame is not None and frame.image.tolist() == [[1, 2], [3, 4]]


def test_malformed_sensor_messages_are_counted_with_one_warning_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = MqttSource("plant/imu", window=2, stride=2)
    with caplog.at_level("WARNING"):
        for payload in (b"not json", b"\xff\xfe", b'["a"]', b"[[1, 2, 3]]", b"[" * 5000, b'{"x": 1}'):
            source.on_message("plant/imu", payload)
        source.on_message("plant/imu", b"[1, 2]")
    assert source.skipped == 6
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "plant/imu" in warnings[0].getMessage()
