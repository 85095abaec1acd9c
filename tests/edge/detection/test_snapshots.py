"""Snapshots: the best frame's crop with margin, a JPEG under the byte cap, a disk budget, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.detection.config import SnapshotConfig
from edge.detection.snapshot_store import SnapshotStore
from edge.detection.snapshots import SnapshotKeeper, crop_region, encode_capped, fit_side
from edge.detection.tracker import TrackedObject
from edge.errors import SnapshotError


def noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noise compresses badly: the cap has to work for it."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def obj(track_id: int, score: float, box: tuple[float, float, float, float]) -> TrackedObject:
    return TrackedObject(track_id, "person", 0, score, box, 3, 0)


def test_crop_grows_by_the_margin_and_stays_in_the_frame() -> None:
    assert crop_region((100, 100, 200, 300), 0.1, 640, 480) == (90, 80, 210, 320)
    assert crop_region((0, 0, 50, 50), 0.5, 60, 40) == (0, 0, 60, 40)
    assert crop_region((639.5, 479.5, 640, 480), 0.0, 640, 480) == (639, 479, 640, 480)  # never empty


def test_fit_side_keeps_the_aspect_and_never_upscales() -> None:
    assert fit_side(noisy(100, 400), 200).shape == (50, 200, 3)
    assert fit_side(noisy(30, 40), 200).shape == (30, 40, 3)


def test_a_jpeg_over_the_cap_gets_lower_quality_then_smaller_until_it_fits() -> None:
    image = noisy(320, 320)
    free = encode_capped(image, 10**7, 90)
    assert free is not None and free.quality == 90 and (free.width, free.height) == (320, 320)
    capped = encode_capped(image, 20_000, 90)
    assert capped is not None and len(capped.data) <= 20_000
    assert capped.width < 320 and capped.quality == 30
    decoded = cv2.imdecode(np.frombuffer(capped.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (capped.height, capped.width, 3)
    smooth = np.full((320, 320, 3), 128, np.uint8)
    easy = encode_capped(smooth, 20_000, 90)
    assert easy is not None and (easy.width, easy.quality) == (320, 90)


def test_an_impossible_cap_gives_no_snapshot() -> None:
    assert encode_capped(noisy(64, 64), 100, 90) is None


def test_the_keeper_holds_the_highest_scoring_frame_and_sends_each_improvement_once() -> None:
    keeper = SnapshotKeeper(SnapshotConfig(enabled=True, margin=0.0, max_side=1000))
    frames = [np.full((100, 100, 3), v, np.uint8) for v in (10, 200, 90)]
    box = (10.0, 10.0, 30.0, 50.0)
    keeper.offer([obj(1, 0.6, box)], frames[0], 0)
    first = keeper.due(1)
    assert first is not None and first.score == 0.6 and keeper.due(1) is None
    keeper.offer([obj(1, 0.9, box)], frames[1], 100)
    keeper.offer([obj(1, 0.7, box)], frames[2], 200)
    best = keeper.due(1)
    assert best is not None and best.score == 0.9 and best.frame_time_ms == 100
    assert best.image.shape == (40, 20, 3) and int(best.image[0, 0, 0]) == 200
    frames[1][:] = 0  # the keeper owns a copy, not a view of the camera's buffer
    assert int(best.image[0, 0, 0]) == 200
    keeper.forget(1)
    assert keeper.held() == set() and keeper.due(1) is None


def test_the_store_evicts_the_oldest_beyond_the_byte_budget(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=250, max_files=100)
    for i in range(5):
        store.save(f"obj-{i}", b"\xff\xd8" + bytes(98))
    assert store.names() == ["obj-3.jpg", "obj-4.jpg"] and store.used_bytes == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj-3.jpg", "obj-4.jpg"]


def test_the_store_evicts_beyond_the_file_count_and_a_rewrite_counts_as_new(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=10**6, max_files=2)
    store.save("a", b"1")
    store.save("b", b"22")
    store.save("a", b"333")  # a better snapshot of a: now the newest
    store.save("c", b"4")
    assert store.names() == ["a.jpg", "c.jpg"] and (tmp_path / "a.jpg").read_bytes() == b"333"
    assert store.used_bytes == 4


def test_a_reopened_store_knows_its_files_and_drops_torn_temp_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=1000, max_files=10)
    store.save("old", b"x" * 400)
    os.utime(tmp_path / "old.jpg", ns=(1, 1))
    store.save("new", b"y" * 400)
    (tmp_path / ".tmp-half.jpg").write_bytes(b"torn")
    again = SnapshotStore(tmp_path, max_bytes=500, max_files=10)
    assert again.names() == ["new.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jpg"]


def test_a_failed_write_leaves_the_previous_snapshot_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path, max_bytes=1000, max_files=10)
    store.save("a", b"first")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(SnapshotError, match="cannot write snapshot"):
        store.save("a", b"second, longer")
    assert (tmp_path / "a.jpg").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"] and store.used_bytes == 5


def test_unsafe_object_ids_and_oversized_snapshots_are_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=10, max_files=10)
    with pytest.raises(ValueError, match="unsafe file name"):
        store.save("../escape", b"x")
    with pytest.raises(SnapshotError, match="exceeds the whole disk budget"):
        store.save("big", b"x" * 11)
    assert list(tmp_path.iterdir()) == []
