"""Signed detection packages from a tiny hand-built ONNX detector (no torch), and synthetic scenes it sees exactly.

The detector finds SIZE x SIZE squares of one bright level on a darker background: every SIZE x SIZE window of the
gray input is averaged (AveragePool, stride 1) and a steep sigmoid makes only a window lying exactly on a square
fire. Its output is Ultralytics' raw contract [batch, 4 + classes, anchors] (cx, cy, w, h then per-class scores),
one anchor per window position, so the shared yolo head decodes it and runs NMS. With contract "decoded" the graph
decodes itself like the cloud trainer's detectors: TopK over the anchors, then boxes [B, K, 4] xyxy, scores [B, K]
and class ids [B, K] as three outputs. Class 0 ("person") is the square; class 1 ("car") never fires. Scenes are
drawn at the model's input size, so frame pixels are model-input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from shared.golden import detection_golden_arrays, golden_bytes
from shared.integrity import sha256_bytes
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    DatasetInfo,
    Golden,
    Manifest,
    Preprocess,
    Target,
    TensorSpec,
    TrainInfo,
    Variant,
    VariantMetrics,
    utcnow,
    version_prefix,
)
from shared.object_store import ObjectStore
from shared.signing import sign
from shared.task_contract import DecodedDetectionHeadSpec, YoloHeadSpec
from shared.tasks import head_for
from tests.edge.package_factory import GOLDEN_FILE, IR_VERSION, OPSET, KeyPair, publish_latest, variant_file

LABELS: tuple[str, ...] = ("person", "car")
HW = 48  # frames and model input are HW x HW
SIZE = 8  # objects are SIZE x SIZE squares
BRIGHT = 255
GOLDEN_COUNT = 8
# Boxes a decoded graph returns per image (TopK), padded with low scores the head's threshold drops.
TOP_K = 10
Contract = Literal["yolo", "decoded"]
# shift: every box moved right by one object width (no box matches the reference); ghosts: a box on every
# half-covered window too (objects invented around each real one).
DetSabotage = Literal["shift", "ghosts"]


def _anchor_boxes() -> np.ndarray:
    """[1, 4, anchors]: cx, cy, w, h of each SIZE x SIZE window, row-major like AveragePool's output."""
    n = HW - SIZE + 1
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
    cx, cy = xs.reshape(-1) + SIZE / 2, ys.reshape(-1) + SIZE / 2
    wh = np.full_like(cx, SIZE)
    return np.stack([cx, cy, wh, wh])[np.newaxis].astype(np.float32)


def detector_onnx(sabotage: DetSabotage | None = None, contract: Contract = "yolo") -> onnx.ModelProto:
    """input [batch, 1, HW, HW] (0..1 gray) -> output0 [batch, 6, anchors] in the yolo contract, or boxes, scores
    and class_ids in the decoded one."""
    boxes = _anchor_boxes()
    if sabotage == "shift":
        boxes = boxes.copy()
        boxes[0, 0] += SIZE
    anchors = boxes.shape[2]
    # A window entirely on a square averages 1.0: sigmoid(60 * (1 - 0.95)) = 0.95; one column off (7/8):
    # sigmoid(60 * (0.875 - 0.95)) = 0.011. Ghosts fire from half coverage up.
    centre = np.float32(0.45 if sabotage == "ghosts" else 0.95)
    nodes = [
        helper.make_node("AveragePool", ["input"], ["avg"], kernel_shape=[SIZE, SIZE], strides=[1, 1]),
        helper.make_node("Sub", ["avg", "centre"], ["centred"]),
        helper.make_node("Mul", ["centred", "steep"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
        helper.make_node("Reshape", ["score", "score_shape"], ["person"]),
        helper.make_node("Mul", ["person", "zero"], ["car"]),
        helper.make_node("Add", ["car", "boxes"], ["batch_boxes"]),  # broadcast the anchors over the batch
        helper.make_node("Concat", ["batch_boxes", "person", "car"], ["output0"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + len(LABELS), anchors])]
    extra = []
    if contract == "decoded":
        xyxy = np.concatenate([boxes[0, :2] - boxes[0, 2:] / 2, boxes[0, :2] + boxes[0, 2:] / 2]).T  # [anchors, 4]
        nodes = [
            *nodes[:5],
            helper.make_node("Squeeze", ["person", "one"], ["flat"]),  # [batch, anchors]
            helper.make_node("TopK", ["flat", "k"], ["scores", "best"], axis=1),
            helper.make_node("Gather", ["anchors_xyxy", "best"], ["boxes"], axis=0),  # [batch, K, 4]
            helper.make_node("Mul", ["best", "zero_i"], ["class_ids"]),
        ]
        extra = [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([TOP_K], dtype=np.int64), "k"),
            numpy_helper.from_array(xyxy.astype(np.float32), "anchors_xyxy"),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i"),
        ]
        outputs = [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", TOP_K, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", TOP_K]),
            helper.make_tensor_value_info("class_ids", TensorProto.INT64, ["batch", TOP_K]),
        ]
    inits = [
        numpy_helper.from_array(np.array(centre, dtype=np.float32), "centre"),
        numpy_helper.from_array(np.array(60.0, dtype=np.float32), "steep"),
        numpy_helper.from_array(np.array([-1, 1, anchors], dtype=np.int64), "score_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(boxes, "boxes"),
    ]
    if contract == "decoded":
        inits = [i for i in inits if i.name not in ("zero", "boxes")] + extra
    graph = helper.make_graph(
        nodes, "tiny-detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, HW, HW])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class Square:
    """One object in one frame: its top-left corner (frame pixels)."""

    x: int
    y: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Its xyxy box."""
        return (float(self.x), float(self.y), float(self.x + SIZE), float(self.y + SIZE))


def draw(squares: Sequence[Square]) -> np.ndarray:
    """A BGR frame: dark background, each square bright."""
    frame = np.full((HW, HW, 3), 20, dtype=np.uint8)
    for s in squares:
        frame[s.y : s.y + SIZE, s.x : s.x + SIZE] = BRIGHT
    return frame


def preprocess() -> Preprocess:
    """Gray, 0..1, no resize needed (frames are drawn at the input size)."""
    return Preprocess(resize=(HW, HW), channel_order="gray", scale=1 / 255, mean=[0.0], std=[1.0])


def golden_inputs() -> np.ndarray:
    """Preprocessed golden frames: 0 to 3 squares each at seeded positions."""
    rng = np.random.default_rng(7)
    out = np.empty((GOLDEN_COUNT, 1, HW, HW), dtype=np.float32)
    for i in range(GOLDEN_COUNT):
        squares = [Square(int(rng.integers(0, HW - SIZE)), 12 * k + int(rng.integers(0, 4)))
                   for k in range(i % 4)]
        gray = cv2.cvtColor(draw(squares), cv2.COLOR_BGR2GRAY)
        out[i, 0] = gray.astype(np.float32) / 255.0
    return out


def manifest_for(
    name: str, version: int, variants: list[Variant], golden: Golden, contract: Contract = "yolo"
) -> Manifest:
    """A detection manifest (schema 2: task + yolo or decoded head) around given variants and golden file."""
    anchors = (HW - SIZE + 1) ** 2
    outputs = [TensorSpec(name="output0", shape=["batch", 4 + len(LABELS), anchors], dtype="float32", layout="NC")]
    head: YoloHeadSpec | DecodedDetectionHeadSpec = YoloHeadSpec(format="yolo")
    if contract == "decoded":
        outputs = [TensorSpec(name="boxes", shape=["batch", TOP_K, 4], dtype="float32", layout="NC"),
                   TensorSpec(name="scores", shape=["batch", TOP_K], dtype="float32", layout="NC"),
                   TensorSpec(name="class_ids", shape=["batch", TOP_K], dtype="int64", layout="NC")]
        head = DecodedDetectionHeadSpec(format="decoded")
    return Manifest(
        name=name,
        version=version,
        created_at=utcnow(),
        frameworks={"onnx": onnx.__version__, "onnxruntime": ort.__version__},
        inputs=[TensorSpec(name="input", shape=["batch", 1, HW, HW], dtype="float32", layout="NCHW")],
        outputs=outputs,
        preprocess=preprocess(),
        labels=list(LABELS),
        task="detection",
        head=head,
        variants=variants,
        golden=golden,
        train=TrainInfo(
            config={"factory": "detection"},
            dataset=DatasetInfo(name="synthetic-squares", sha256="0" * 64, num_train=1, num_val=1,
                                num_test=GOLDEN_COUNT),
            metrics={},
            seed=0,
        ),
    )


def _variant(file: str, data: bytes, precision: str) -> Variant:
    return Variant(
        file=file, precision=precision, sha256=sha256_bytes(data), bytes=len(data),  # type: ignore[arg-type]
        target=Target(device="cpu"),
        metrics=VariantMetrics(map50=0.99, map50_95=0.9, latency_ms_p50=0.1, latency_ms_p99=0.2),
    )


def build_detection_package(
    name: str,
    version: int,
    *,
    precisions: Sequence[str] = ("fp32",),
    sabotage: dict[str, DetSabotage] | None = None,
    serve: DetSabotage | None = None,
    contract: Contract = "yolo",
) -> tuple[Manifest, dict[str, bytes]]:
    """Manifest and files; golden detections come from the clean detector through the shared yolo head.

    sabotage: precision -> a variant that disagrees with FP32. serve: the whole version detects this way, golden
    included (a model that passes its own gates but invents or misplaces objects on live frames).
    """
    sabotage = sabotage or {}
    inputs = golden_inputs()
    reference = detector_onnx(serve, contract).SerializeToString()
    session = ort.InferenceSession(reference, providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": inputs}), strict=True))
    files: dict[str, bytes] = {}
    variants = []
    for precision in precisions:
        data = detector_onnx(sabotage.get(precision) or serve, contract).SerializeToString()
        files[variant_file(precision)] = data
        variants.append(_variant(variant_file(precision), data, precision))
    placeholder = Golden(file=GOLDEN_FILE, sha256="0" * 64, bytes=1, count=GOLDEN_COUNT)
    detections = head_for(manifest_for(name, version, variants, placeholder, contract)).decode(outputs)
    golden = golden_bytes(detection_golden_arrays(inputs, detections))
    files[GOLDEN_FILE] = golden
    manifest = manifest_for(
        name, version, variants,
        Golden(file=GOLDEN_FILE, sha256=sha256_bytes(golden), bytes=len(golden), count=GOLDEN_COUNT), contract,
    )
    return manifest, files


def make_detection_package(
    store: ObjectStore,
    name: str,
    version: int,
    key: KeyPair,
    *,
    precisions: Sequence[str] = ("fp32",),
    sabotage: dict[str, DetSabotage] | None = None,
    serve: DetSabotage | None = None,
    latest: bool = True,
    contract: Contract = "yolo",
) -> Manifest:
    """Publish a detection package like the trainer does (files, signature, manifest, signed latest.json)."""
    manifest, files = build_detection_package(name, version, precisions=precisions, sabotage=sabotage, serve=serve,
                                              contract=contract)
    body = manifest.to_bytes()
    prefix = version_prefix(name, version)
    for fname, data in files.items():
        store.put(prefix + fname, data)
    store.put(prefix + SIGNATURE_FILE, sign(body, key.private))
    store.put(prefix + MANIFEST_FILE, body)
    if latest:
        publish_latest(store, name, version, key)
    return manifest


def write_scene(directory: Path, frames: Sequence[Sequence[Square]]) -> Path:
    """The scene as numbered PNG frames (lossless), for the image_dir source."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, squares in enumerate(frames):
        cv2.imwrite(str(directory / f"frame-{i:05d}.png"), draw(squares))
    return directory
