"""A user's recordings: a folder of CSV files, one per recording, refused in one line naming the file when bad.

Each file has a header; every column but the label and time columns is a channel, in the same order in every
file. Classes come from a label column (one class per row) or, for files without one, from the folder's labels
file (``file,label`` lines). Cells are parsed with float(), as a device parses its rows.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from cloud.errors import DataError
from cloud.sensor.config import SensorDataConfig
from cloud.sensor.recordings import Recording, SensorDataset
from shared.window_recipe import SensorChannel

# Sample rates of files may differ by this share before they are refused as different streams.
RATE_TOLERANCE = 0.02
# Channel names reach the manifest and MQTT payloads (shared.names.check_ident's rule).
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _cell(value: str, where: str, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: column {column!r} holds {value[:40]!r}, not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: column {column!r} holds {value!r}; readings must be finite numbers")
    return number


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the recording as CSV") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        rows = [r for r in csv.reader(text.splitlines()) if any(cell.strip() for cell in r)]
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: empty file; a recording needs a header row and readings")
    return [h.strip() for h in rows[0]], rows[1:]


def _labels_file(path: Path) -> dict[str, str]:
    header, rows = _read_rows(path)
    out: dict[str, str] = {}
    titled = [h.lower() for h in header] == ["file", "label"]
    body = rows if titled else [header, *rows]
    for i, row in enumerate(body, start=2 if titled else 1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{path} line {i}: expected 'file,label', got {','.join(row)[:60]!r}")
        out[row[0].strip()] = row[1].strip()
    return out


def _recording(path: Path, header: list[str], rows: list[list[str]], cfg: SensorDataConfig,
               channels: list[str], file_label: str | None, need_labels: bool) -> tuple[Recording, float | None]:
    index = {name: i for i, name in enumerate(header)}
    values = np.empty((len(rows), len(channels)), dtype=np.float32)
    labels: list[str] = []
    times: list[float] = []
    for n, row in enumerate(rows):
        where = f"{path} line {n + 2}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} cells, the header has {len(header)}")
        values[n] = [_cell(row[index[c]], where, c) for c in channels]
        if cfg.label_column in index:
            label = row[index[cfg.label_column]].strip()
            if not label and need_labels:
                raise DataError(f"{where}: empty {cfg.label_column!r}; every reading needs its class")
            labels.append(label)
        if cfg.time_column is not None:
            times.append(_cell(row[index[cfg.time_column]], where, cfg.time_column))
    if len(rows) < cfg.window:
        raise DataError(f"{path}: {len(rows)} readings, fewer than one window of {cfg.window}")
    rate = None
    if times:
        steps = np.diff(np.asarray(times, dtype=np.float64))
        if np.any(steps <= 0):
            bad = int(np.argmax(steps <= 0))
            raise DataError(f"{path} line {bad + 3}: time {times[bad + 1]} does not follow {times[bad]}; "
                            f"column {cfg.time_column!r} must increase")
        rate = 1.0 / float(np.median(steps))
    per_row: np.ndarray | None = None
    if labels and cfg.label_column in index:
        per_row = np.asarray(labels)
    elif file_label is not None:
        per_row = np.full(len(rows), file_label)
    return Recording(path.stem, values, per_row), rate


def load_csv_dir(cfg: SensorDataConfig, need_labels: bool) -> SensorDataset:
    """Every *.csv recording under cfg.dir (the labels file aside); DataError naming the first bad file."""
    root = cfg.dir
    if root is None or not root.is_dir():
        raise DataError(f"sensor data folder {root} does not exist or is not a folder")
    labels_path = root / cfg.labels_file
    files = sorted(p for p in root.glob("*.csv") if p.name != cfg.labels_file)
    if not files:
        raise DataError(f"{root}: no .csv recordings (one CSV file per recording, with a header row)")
    file_labels = _labels_file(labels_path) if labels_path.is_file() else {}
    first_header: list[str] | None = None
    channels: list[str] = []
    recordings: list[Recording] = []
    rates: list[tuple[Path, float]] = []
    for path in files:
        header, rows = _read_rows(path)
        if first_header is None:
            first_header = header
            skip = {cfg.label_column, cfg.time_column}
            channels = [h for h in header if h not in skip]
            if not channels:
                raise DataError(f"{path}: no channel columns besides {cfg.label_column!r}/{cfg.time_column!r}")
            if len(set(header)) != len(header) or any(not h for h in header):
                raise DataError(f"{path}: header {header} has empty or repeated column names")
            for name in channels:
                if not _CHANNEL_NAME.match(name):
                    raise DataError(f"{path}: column name {name!r} cannot name a channel: use letters, digits, "
                                    "'_' or '-' (at most 64), starting with a letter or digit")
            if cfg.time_column is not None and cfg.time_column not in header:
                raise DataError(f"{path}: no time column {cfg.time_column!r} (data.time_column)")
        elif header != first_header:
            raise DataError(f"{path}: header {header} differs from {files[0].name}'s {first_header}; every "
                            "recording needs the same columns in the same order")
        has_column = cfg.label_column in header
        file_label = file_labels.get(path.name)
        if need_labels and not has_column and file_label is None:
            raise DataError(f"{path}: no {cfg.label_column!r} column and no line for it in {labels_path}")
        rec, rate = _recording(path, header, rows, cfg, channels, file_label, need_labels)
        recordings.append(rec)
        if rate is not None:
            rates.append((path, rate))
    sample_rate = _sample_rate(cfg, rates)
    return SensorDataset(
        name=str(root),
        channels=[SensorChannel(name=c, unit=cfg.units.get(c, "")) for c in channels],
        sample_rate_hz=sample_rate,
        recordings=recordings,
    )


def _sample_rate(cfg: SensorDataConfig, rates: list[tuple[Path, float]]) -> float:
    """The configured rate, or the one the time columns agree on; DataError when files disagree with it."""
    reference = cfg.sample_rate_hz if cfg.sample_rate_hz is not None else (rates[0][1] if rates else None)
    if reference is None:
        raise DataError("the recordings have no time column: set data.sample_rate_hz (readings per second) or "
                        "data.time_column")
    for path, rate in rates:
        if abs(rate - reference) > RATE_TOLERANCE * reference:
            raise DataError(f"{path}: readings come at {rate:.4g} Hz, not {reference:.4g} Hz like the others")
    return float(reference)
