"""Recordings split by recording (never by window, so no window of a test recording is trained on), the window
recipe fitted on the training split, and every split cut into normalized [N, C, T] windows by shared.windowing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cloud.errors import DataError
from cloud.sensor.config import SensorDataConfig
from cloud.sensor.recordings import Recording, SensorDataset
from shared.window_recipe import WindowRecipe
from shared.windowing import window_starts, windows_of

# A channel this flat in the training data would blow up (x - mean) / std: refuse it, naming the channel.
_MIN_STD = 1e-6


@dataclass(frozen=True)
class Windows:
    """Normalized windows [N, C, T], their class index (-1: mixed or unlabelled) and source recording index."""

    inputs: np.ndarray
    labels: np.ndarray
    recording: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def labelled(self) -> Windows:
        """Only windows whose readings all carry one class."""
        keep = self.labels >= 0
        return Windows(self.inputs[keep], self.labels[keep], self.recording[keep])


@dataclass(frozen=True)
class SensorSplits:
    """Recordings per split and the recipe fitted on the training split."""

    train: list[Recording]
    val: list[Recording]
    test: list[Recording]
    recipe: WindowRecipe
    classes: list[str]


def split_recordings(data: SensorDataset, cfg: SensorDataConfig, seed: int) -> SensorSplits:
    """Seeded split by recording (stratified by a recording's first class), then the recipe from training rows."""
    needed = 2 if data.test else 3
    if len(data.recordings) < needed:
        splits = "train, validation" if data.test else "train, validation, test"
        raise DataError(f"{data.name}: {len(data.recordings)} recordings: at least {needed} are needed "
                        f"({splits}); a recording is one CSV file")
    rng = np.random.default_rng(seed)
    pool = list(data.recordings)
    test = list(data.test)
    if not test:
        test_n = max(1, round(len(pool) * cfg.test_fraction))
        pool, test = _take(pool, test_n, rng)
    val_n = max(1, round(len(pool) * cfg.val_fraction))
    train, val = _take(pool, val_n, rng)
    if not train:
        raise DataError(f"{data.name}: {len(data.recordings)} recordings leave none to train on; add recordings")
    recipe = fit_recipe(data, train, cfg)
    return SensorSplits(train, val, test, recipe, data.classes)


def _take(pool: list[Recording], n: int, rng: np.random.Generator) -> tuple[list[Recording], list[Recording]]:
    """(rest, taken): n recordings drawn round-robin over classes so every class is held out when it can be."""
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(pool):
        key = str(r.labels[0]) if r.labels is not None else ""
        by_class.setdefault(key, []).append(i)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_class.items())]
    taken: list[int] = []
    while len(taken) < min(n, len(pool) - 1):
        for q in queues:
            if q and len(taken) < min(n, len(pool) - 1):
                taken.append(int(q.pop()))
    chosen = set(taken)
    return [r for i, r in enumerate(pool) if i not in chosen], [pool[i] for i in sorted(chosen)]


def fit_recipe(data: SensorDataset, train: list[Recording], cfg: SensorDataConfig) -> WindowRecipe:
    """Per-channel mean/std over every training reading (float64), with the stream's rate, window and channels."""
    rows = np.concatenate([r.values for r in train]).astype(np.float64)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    for i, s in enumerate(std):
        if s < _MIN_STD:
            raise DataError(f"{data.name}: channel {data.channels[i].name!r} is constant in the training "
                            "recordings; drop the column or record it moving")
    return WindowRecipe(
        sample_rate_hz=data.sample_rate_hz, window=cfg.window, hop=cfg.hop, channels=data.channels,
        mean=[float(m) for m in mean], std=[float(s) for s in std],
    )


def window_labels(rec: Recording, recipe: WindowRecipe, classes: list[str]) -> np.ndarray:
    """Class index per window of a recording; -1 where its readings are unlabelled or span two classes."""
    starts = window_starts(rec.length, recipe.window, recipe.hop)
    if rec.labels is None or not classes:
        return np.full(starts.size, -1, dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(starts.size, -1, dtype=np.int64)
    for k, s in enumerate(starts):
        span = rec.labels[s : s + recipe.window]
        if span.size and np.all(span == span[0]):
            out[k] = index[str(span[0])]
    return out


def cut(recordings: list[Recording], recipe: WindowRecipe, classes: list[str]) -> Windows:
    """All windows of the recordings, in order, normalized by the recipe."""
    inputs, labels, owner = [], [], []
    for i, rec in enumerate(recordings):
        w = windows_of(rec.values, recipe)
        inputs.append(w)
        labels.append(window_labels(rec, recipe, classes))
        owner.append(np.full(len(w), i, dtype=np.int64))
    if not inputs:
        empty = np.zeros((0, recipe.num_channels, recipe.window), dtype=np.float32)
        return Windows(empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return Windows(np.concatenate(inputs), np.concatenate(labels), np.concatenate(owner))


def dataset_sha256(recordings: list[Recording]) -> str:
    """Content hash over every recording's readings and classes, in order."""
    h = hashlib.sha256()
    for r in recordings:
        h.update(r.name.encode())
        h.update(np.ascontiguousarray(r.values).tobytes())
        if r.labels is not None:
            h.update("\x1f".join(map(str, r.labels)).encode())
    return h.hexdigest()
