"""A tiny detection run end to end: train a few steps, export FP32/FP16/INT8 ONNX, gate on mAP, sign and publish."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cloud.config import TrainConfig
from cloud.detection.pipeline import run_detection
from cloud.pipeline import PipelineResult
from cloud.publish import verify_published
from cloud.signing_key import resolve_signing_key
from shared.golden import read_detection_golden
from shared.object_store import LocalStore
from shared.tasks import head_for

TOP_K = 10


def tiny_cfg(tmp_path: Path) -> TrainConfig:
    """64x64 scenes, a width-4 network, 2 epochs over 48 scenes: seconds, not a useful detector."""
    return TrainConfig.model_validate({
        "task": "detection",
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "progress_bar": False, "lr": 0.01,
                    "log_dir": str(tmp_path / "runs")},
        "data": {"batch_size": 16},
        "detection": {"image_size": [64, 64], "width": 4, "top_k": TOP_K, "train_scenes": 48, "val_scenes": 8,
                      "test_scenes": 16, "max_scale": 30, "min_scale": 12, "map_drop_budget": 1.0},
        "export": {"calibration_samples": 16, "latency_runs": 10, "golden_samples": 4},
        "publish": {"name": "tinydet", "store": {"uri": str(tmp_path / "store")}, "work_dir": str(tmp_path / "build"),
                    "dev_key_dir": str(tmp_path / "keys")},
    })


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineResult, TrainConfig]:
    tmp = tmp_path_factory.mktemp("det")
    cfg = tiny_cfg(tmp)
    return run_detection(cfg), cfg


def test_every_precision_is_exported_gated_and_recorded(published: tuple[PipelineResult, TrainConfig]) -> None:
    result, _ = published
    m = result.manifest
    assert m.task == "detection" and m.head.format == "decoded" and m.head.nms_in_graph
    assert sorted(v.precision for v in m.variants) == ["fp16", "fp32", "int8"], m.rejected
    for v in m.variants:
        assert v.metrics.map50 is not None and v.metrics.map50_95 is not None
        assert 0.0 <= v.metrics.map50_95 <= v.metrics.map50 <= 1.0
    int8 = next(v for v in m.variants if v.precision == "int8")
    assert int8.quantization is not None and "head tail kept in float" in int8.quantization.reason
    assert m.preprocess.resize_mode == "letterbox" and m.preprocess.resize == (64, 64)
    assert "test_map50" in m.train.metrics and "train_seconds" in m.train.metrics


def test_published_variants_load_in_onnxruntime_and_follow_the_contract(
    published: tuple[PipelineResult, TrainConfig],
) -> None:
    result, cfg = published
    store = LocalStore(Path(cfg.publish.store.uri))
    key, _ = resolve_signing_key(cfg.publish)
    manifest = verify_published(store, "tinydet", None, [key.public_key()])
    golden = read_detection_golden(result.package_dir / manifest.golden.file, count=manifest.golden.count,
                                   classes=len(manifest.labels))
    head = head_for(manifest)
    for v in manifest.variants:
        session = ort.InferenceSession(str(result.package_dir / v.file), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        assert names == ["boxes", "scores", "class_ids"]
        boxes, scores, ids = session.run(None, {"input": golden.inputs})
        n = golden.inputs.shape[0]
        assert boxes.shape == (n, TOP_K, 4) and scores.shape == (n, TOP_K) and ids.shape == (n, TOP_K)
        assert boxes.dtype == np.float32 and scores.dtype == np.float32 and ids.dtype == np.int64
        assert (boxes >= 0).all() and (boxes <= 64).all() and (boxes[..., 2:] >= boxes[..., :2]).all()
        assert ((ids >= 0) & (ids < len(manifest.labels))).all()
        assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
        decoded = head.decode({"boxes": boxes, "scores": scores, "class_ids": ids})
        assert len(decoded) == n
        if v.precision == "fp32":  # the golden detections are the FP32 model's, through the same head
            assert golden.agreement(decoded, manifest.labels).f1 == pytest.approx(1.0)
