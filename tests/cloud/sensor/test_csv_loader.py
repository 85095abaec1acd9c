"""A user's CSV recordings load as the device will read them; a bad file is refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud.errors import DataError
from cloud.sensor.config import SensorDataConfig
from cloud.sensor.csv_loader import load_csv_dir


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def rows(n: int, label: str | None = None, start: float = 0.0, step: float = 0.02) -> list[str]:
    out = []
    for i in range(n):
        cells = [f"{start + i * step:.3f}", f"{0.1 * i:.4f}", f"{-0.05 * i + 1:.4f}"]
        out.append(",".join(cells + ([label] if label else [])))
    return out


def cfg(tmp_path: Path, **kw: object) -> SensorDataConfig:
    return SensorDataConfig.model_validate({"source": "csv", "dir": tmp_path, "window": 4, "hop": 2, **kw})


def test_a_label_column_gives_each_reading_its_class(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "t,acc_x,acc_y,label", rows(10, "walk"))
    write(tmp_path / "b.csv", "t,acc_x,acc_y,label", rows(12, "run"))
    data = load_csv_dir(cfg(tmp_path, time_column="t", units={"acc_x": "g"}), need_labels=True)
    assert [r.name for r in data.recordings] == ["a", "b"]
    assert [c.name for c in data.channels] == ["acc_x", "acc_y"] and data.channels[0].unit == "g"
    assert data.sample_rate_hz == pytest.approx(50.0)
    assert data.classes == ["run", "walk"]
    assert data.recordings[0].values.dtype == np.float32 and data.recordings[0].values[3, 0] == np.float32(0.3)


def test_a_labels_file_names_each_recordings_class(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "acc_x,acc_y,acc_z", rows(6))
    write(tmp_path / "b.csv", "acc_x,acc_y,acc_z", rows(6))
    (tmp_path / "labels.csv").write_text("file,label\na.csv,idle\nb.csv,busy\n")
    data = load_csv_dir(cfg(tmp_path, sample_rate_hz=10), need_labels=True)
    labels = data.recordings[0].labels
    assert data.classes == ["busy", "idle"] and labels is not None and set(labels) == {"idle"}


@pytest.mark.parametrize(
    ("header", "body", "wanted"),
    [
        ("acc_x,acc_y,label", ["1,2,a", "1,oops,a", "1,2,a", "1,2,a"], r"bad\.csv line 3: column 'acc_y' holds 'oops'"),
        ("acc_x,acc_y,label", ["1,2,a", "1,nan,a", "1,2,a", "1,2,a"], r"bad\.csv line 3: .*finite"),
        ("acc_x,acc_y,label", ["1,2,a", "1,2", "1,2,a", "1,2,a"], r"bad\.csv line 3: 2 cells"),
        ("acc_x,acc_y,label", ["1,2,a", "1,2,"] + ["1,2,a"] * 2, r"bad\.csv line 3: empty 'label'"),
        ("acc_x,acc_y,label", ["1,2,a"] * 3, r"bad\.csv: 3 readings, fewer than one window of 4"),
        ("acc_y,acc_x,label", ["1,2,a"] * 4, r"bad\.csv: header .* differs"),
    ],
)
def test_bad_files_are_refused_in_one_line_naming_them(tmp_path: Path, header: str, body: list[str],
                                                       wanted: str) -> None:
    write(tmp_path / "a_good.csv", "acc_x,acc_y,label", ["1,2,a"] * 4)
    write(tmp_path / "bad.csv", header, body)
    with pytest.raises(DataError, match=wanted) as info:
        load_csv_dir(cfg(tmp_path, sample_rate_hz=10), need_labels=True)
    assert "\n" not in str(info.value)


def test_time_that_goes_backwards_or_a_different_rate_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "t,x,label", ["0.0,1,a", "0.1,1,a", "0.05,1,a", "0.3,1,a"])
    with pytest.raises(DataError, match=r"a\.csv line 4: time 0\.05 does not follow 0\.1"):
        load_csv_dir(cfg(tmp_path, time_column="t"), need_labels=True)
    write(tmp_path / "a.csv", "t,x,label", [f"{i * 0.1},1,a" for i in range(5)])
    write(tmp_path / "b.csv", "t,x,label", [f"{i * 0.2},1,a" for i in range(5)])
    with pytest.raises(DataError, match=r"b\.csv: readings come at 5 Hz, not 10 Hz"):
        load_csv_dir(cfg(tmp_path, time_column="t"), need_labels=True)


def test_a_file_without_a_class_is_refused_for_classification(tmp_path: Path) -> None:
    write(tmp_path / "bad.csv", "acc_x,acc_y", ["1,2"] * 4)
    with pytest.raises(DataError, match=r"bad\.csv: no 'label' column and no line for it in .*labels\.csv"):
        load_csv_dir(cfg(tmp_path, sample_rate_hz=10), need_labels=True)


def test_without_a_rate_or_time_column_the_user_is_told_what_to_set(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x,label", ["1,a"] * 5)
    with pytest.raises(DataError, match=r"set data\.sample_rate_hz"):
        load_csv_dir(cfg(tmp_path), need_labels=True)


def test_anomaly_data_needs_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x,y", ["1,2", "3,4", "5,6", "7,8"])
    data = load_csv_dir(cfg(tmp_path, sample_rate_hz=1), need_labels=False)
    assert data.recordings[0].labels is None and data.classes == []


def test_not_utf8_and_unsafe_channel_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"x,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"a\.csv: not UTF-8"):
        load_csv_dir(cfg(tmp_path, sample_rate_hz=1), need_labels=False)
    write(tmp_path / "a.csv", "acc x,y", ["1,2"] * 4)
    with pytest.raises(DataError, match=r"a\.csv: column name 'acc x' cannot name a channel"):
        load_csv_dir(cfg(tmp_path, sample_rate_hz=1), need_labels=False)


def test_too_few_recordings_to_hold_any_out_are_refused(tmp_path: Path) -> None:
    from cloud.sensor.splits import split_recordings

    write(tmp_path / "a.csv", "x,y", ["1,2", "3,4", "5,6", "7,8"])
    write(tmp_path / "b.csv", "x,y", ["1,2", "3,5", "5,6", "7,9"])
    data = load_csv_dir(cfg(tmp_path, sample_rate_hz=1), need_labels=False)
    with pytest.raises(DataError, match=r"2 recordings: at least 3 are needed \(train, validation, test\)"):
        split_recordings(data, cfg(tmp_path, sample_rate_hz=1), seed=0)
