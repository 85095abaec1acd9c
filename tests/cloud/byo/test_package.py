"""External ONNX files become signed packages like the trainer's: contract, recipe, golden samples, gated INT8."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from cloud.byo.package import PackageRequest, package_model
from cloud.byo.recipe import IMAGENET_MEAN, IMAGENET_STD
from cloud.byo.variants import Budget
from cloud.publish import verify_published
from shared.golden import read_detection_golden, read_golden
from shared.integrity import sha256_file
from shared.object_store import LocalStore
from shared.signing import KeyPairPaths, generate_keypair, load_public_key
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.cloud.byo.external_models import (
    COLOURS,
    IMGSZ,
    SIZE,
    classifier_onnx,
    fp16_fragile_classifier_onnx,
    write_colour_folders,
    write_square_images,
    yolo_onnx,
)
from tests.fixtures.s3 import S3Endpoint
from tests.test_cli import run


@pytest.fixture
def pair(tmp_path: Path) -> KeyPairPaths:
    return generate_keypair(tmp_path / "keys" / "pkg.key")


def write_coco(root: Path, count: int, seed: int) -> Path:
    """Square scenes with COCO JSON labels (categories person and car, as the model's names)."""
    scenes = write_square_images(root, count, seed)
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for i, corners in enumerate(scenes):
        images.append({"id": i + 1, "file_name": f"scene-{i:03d}.png", "width": IMGSZ, "height": IMGSZ})
        for x, y in corners:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "bbox": [x, y, SIZE, SIZE], "area": SIZE * SIZE, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _calib(root: Path, count: int) -> Path:
    write_square_images(root, count)
    return root


def test_a_yolo_export_is_packaged_from_its_own_metadata_with_int8_gated_on_coco_eval_data(
    tmp_path: Path, pair: KeyPairPaths
) -> None:
    model = yolo_onnx(tmp_path / "yolo11n.onnx")
    store = LocalStore(tmp_path / "store")
    done = package_model(PackageRequest(
        onnx=model, task="detection", name="squares", store=str(store.root), signing_key=pair.private,
        calibration_dir=_calib(tmp_path / "calib", 24),
        eval_data=write_coco(tmp_path / "val", 12, seed=5),
    ))
    m = verify_published(store, "squares", None, [load_public_key(pair.public)])
    assert m == done.manifest and m.version == 1
    # The contract and the recipe came from the file: Ultralytics' raw head, names, imgsz and letterbox.
    assert (m.task, m.head.format, m.labels) == ("detection", "yolo", ["person", "car"])
    p = m.preprocess
    assert (p.resize, p.resize_mode, p.channel_order, p.pad_value, p.mean, p.std) == (
        (IMGSZ, IMGSZ), "letterbox", "rgb", 114, [0.0] * 3, [1.0] * 3)
    assert m.inputs[0].name == "images" and m.inputs[0].shape == [1, 3, IMGSZ, IMGSZ]
    # FP32 is the user's file byte for byte; an exact detector scores full mAP on the labelled eval set.
    fp32, fp16, int8 = m.variants
    assert (fp32.precision, fp16.precision, int8.precision) == ("fp32", "fp16", "int8")
    assert fp32.sha256 == sha256_file(model)
    assert fp32.metrics.map50 == pytest.approx(1.0) and fp32.metrics.map50_95 == pytest.approx(1.0)
    assert int8.quantization is not None and int8.quantization.calibration_samples == 24
    assert fp32.metrics.map50_95 is not None and int8.metrics.map50_95 is not None
    assert fp32.metrics.map50_95 - int8.metrics.map50_95 <= 0.015
    # FP16 as the trainer records it: for GPUs, float32 I/O, within budget on the eval data, figures in train.
    assert fp16.target.device == "cuda" and fp16.file == "model.fp16.onnx"
    assert fp16.metrics.map50_95 is not None and fp32.metrics.map50_95 - fp16.metrics.map50_95 <= 0.015
    assert fp16.metrics.agreement is not None and fp16.metrics.agreement >= 0.9
    assert m.train.metrics["fp16_map50_95"] == fp16.metrics.map50_95
    fp16_file = tmp_path / "model.fp16.onnx"
    fp16_file.write_bytes(store.get("models/squares/1/model.fp16.onnx"))
    assert fp16.sha256 == sha256_file(fp16_file)
    graph = onnx.load(str(fp16_file)).graph
    assert [i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]] == [onnx.TensorProto.FLOAT] * 2
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer), "weights are FP16"
    assert m.train.dataset.name.startswith(str(tmp_path / "val")) and m.train.dataset.num_test == 12
    assert m.train.config["onnx_sha256"] == sha256_file(model)
    assert m.frameworks["onnx_producer"].startswith("pytorch")
    # Golden samples are calibration images with the FP32 model's boxes: whole squares, in model-input pixels.
    cache = tmp_path / "golden.npz"
    cache.write_bytes(store.get("models/squares/1/golden.npz"))
    golden = read_detection_golden(cache, count=m.golden.count, classes=2)
    boxes = [d.box for frame in golden.detections(m.labels) for d in frame]
    assert boxes and all((x2 - x1, y2 - y1) == (SIZE, SIZE) for x1, y1, x2, y2 in boxes)


def test_fp16_and_int8_over_their_budget_are_recorded_as_rejected_with_figures_and_fp32_still_published(
    tmp_path: Path, pair: KeyPairPaths
) -> None:
    store = LocalStore(tmp_path / "store")
    write_square_images(tmp_path / "calib", 16)
    done = package_model(PackageRequest(
        onnx=yolo_onnx(tmp_path / "yolo.onnx"), task="detection", name="squares", store=str(store.root),
        signing_key=pair.private, calibration_dir=tmp_path / "calib", eval_data=write_coco(tmp_path / "val", 6, 2),
        budget=Budget(map_drop=-1.0),  # no variant can be 100 points better than FP32
    ))
    assert [v.precision for v in done.manifest.variants] == ["fp32"]
    assert [r.precision for r in done.manifest.rejected] == ["fp16", "int8"]
    for rejected in done.manifest.rejected:
        assert "over budget" in rejected.reason and "mAP@.5:.95" in rejected.reason
        assert "budget -100.00" in rejected.reason
        assert not store.exists(f"models/squares/1/model.{rejected.precision}.onnx")
    assert any(line.startswith("fp16: REJECTED") for line in done.lines)


def test_a_classifier_whose_fp16_changes_its_answers_has_fp16_rejected_by_the_golden_agreement(
    tmp_path: Path, pair: KeyPairPaths
) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    store = LocalStore(tmp_path / "store")
    done = package_model(PackageRequest(
        onnx=fp16_fragile_classifier_onnx(tmp_path / "fragile.onnx"), task="classification", name="colours",
        store=str(store.root), signing_key=pair.private, labels=tmp_path / "labels.txt",
        calibration_dir=write_colour_folders(tmp_path / "calib", 4), int8=False,
        budget=Budget(accuracy_drop=1.0),  # accuracy may fall to nothing: only the golden agreement can refuse it
    ))
    assert [v.precision for v in done.manifest.variants] == ["fp32"]
    (rejected,) = done.manifest.rejected
    found = re.search(r"agreement with fp32 on the golden samples (\d\.\d+)", rejected.reason)
    assert rejected.precision == "fp16" and found is not None and float(found.group(1)) < 0.9, rejected.reason
    assert not store.exists("models/colours/1/model.fp16.onnx")


def test_fp16_is_not_built_with_no_fp16(tmp_path: Path, pair: KeyPairPaths) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    proc = run("package", "--onnx", str(classifier_onnx(tmp_path / "c.onnx")), "--task", "classification",
               "--labels", str(tmp_path / "labels.txt"), "--name", "colours", "--store", str(tmp_path / "store"),
               "--signing-key", str(pair.private), "--no-fp16")
    assert proc.returncode == 0, proc.stderr
    m = verify_published(LocalStore(tmp_path / "store"), "colours", None, [load_public_key(pair.public)])
    assert [v.precision for v in m.variants] == ["fp32"] and m.rejected == []


def test_an_external_classifier_gets_imagenet_normalisation_and_its_figures_from_class_folders(
    tmp_path: Path, pair: KeyPairPaths
) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    store = LocalStore(tmp_path / "store")
    done = package_model(PackageRequest(
        onnx=classifier_onnx(tmp_path / "colour.onnx"), task="classification", name="colours",
        store=str(store.root), signing_key=pair.private, labels=tmp_path / "labels.txt",
        calibration_dir=write_colour_folders(tmp_path / "calib", 4),
        eval_data=write_colour_folders(tmp_path / "eval", 3),
    ))
    m = verify_published(store, "colours", None, [load_public_key(pair.public)])
    assert (m.task, m.head.format, m.labels) == ("classification", "logits", list(COLOURS))
    assert (m.preprocess.resize, m.preprocess.resize_mode, m.preprocess.mean, m.preprocess.std) == (
        (32, 32), "stretch", IMAGENET_MEAN, IMAGENET_STD)
    assert m.inputs[0].shape == ["batch", 3, 32, 32]
    assert [v.precision for v in m.variants] == ["fp32", "fp16", "int8"]
    assert all(v.metrics.accuracy == 1.0 for v in m.variants)
    assert m.variants[1].target.device == "cuda" and m.variants[1].metrics.agreement == 1.0
    assert m.train.dataset.num_test == 9 and done.manifest.train.metrics["int8_accuracy"] == 1.0
    assert done.manifest.train.metrics["fp16_accuracy"] == 1.0
    cache = tmp_path / "golden.npz"
    cache.write_bytes(store.get("models/colours/1/golden.npz"))
    golden = read_golden(cache, count=m.golden.count, classes=3)
    assert set(golden.labels.tolist()) == {0, 1, 2}, "golden samples cover every class"


def test_without_calibration_images_golden_samples_are_seeded_synthetic_scenes_and_no_int8_is_built(
    tmp_path: Path, pair: KeyPairPaths
) -> None:
    store = LocalStore(tmp_path / "store")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    args = {"onnx": classifier_onnx(tmp_path / "c.onnx"), "task": "classification", "store": str(store.root),
            "signing_key": pair.private, "labels": tmp_path / "labels.txt"}
    first = package_model(PackageRequest(name="colours", **args)).manifest  # type: ignore[arg-type]
    again = package_model(PackageRequest(name="colours", **args)).manifest  # type: ignore[arg-type]
    # FP16 needs no calibration: judged against FP32's own answers on the synthetic scenes.
    assert [v.precision for v in first.variants] == ["fp32", "fp16"] and first.rejected == []
    assert "synthetic scenes" in first.train.dataset.name and "FP32 model's own results" in first.train.dataset.name
    assert (first.version, again.version) == (1, 2)
    assert first.golden.sha256 == again.golden.sha256, "the same seeded inputs give the same golden samples"


def test_the_cli_publishes_to_s3_like_the_trainer(
    tmp_path: Path, pair: KeyPairPaths, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    uri = f"s3://{s3.bucket}/edgeferry"
    proc = run("package", "--onnx", str(classifier_onnx(tmp_path / "c.onnx")), "--task", "classification",
               "--labels", str(tmp_path / "labels.txt"), "--name", "colours", "--store", uri,
               "--signing-key", str(pair.private), env={"AWS_ENDPOINT_URL": s3.url})
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("published colours v1 to s3://") and last.endswith("variants: fp32, fp16)")
    m = verify_published(open_store(StoreConfig(uri=uri)), "colours", None, [load_public_key(pair.public)])
    assert m.head.format == "logits" and np.isclose(m.variants[0].metrics.accuracy or 0.0, 1.0)


def test_golden_samples_stay_within_their_byte_budget(tmp_path: Path, pair: KeyPairPaths) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    per_image = 3 * 32 * 32 * 4
    m = package_model(PackageRequest(
        onnx=classifier_onnx(tmp_path / "c.onnx"), task="classification", name="colours",
        store=str(tmp_path / "store"), signing_key=pair.private, labels=tmp_path / "labels.txt",
        golden_budget_bytes=2 * per_image + 100,
    )).manifest
    assert m.golden.count == 2
