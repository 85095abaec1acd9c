"""`edgeferry package` refuses what a device could not serve safely: one line, exit 1, nothing in the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from shared.signing import generate_keypair
from tests.cloud.byo.external_models import classifier_onnx, ultralytics_metadata, yolo_onnx
from tests.test_cli import one_line_error, run


def _graph_model(path: Path, nodes: list[onnx.NodeProto], input_dims: list[int | str], output_dims: list[int | str],
                 inits: list[onnx.TensorProto] | None = None, domains: tuple[str, ...] = ()) -> Path:
    graph = helper.make_graph(nodes, "external",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, output_dims)], inits or [])
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def malformed(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "model.onnx"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path, []


def external_data(tmp: Path) -> tuple[Path, list[str]]:
    path = yolo_onnx(tmp / "model.onnx")
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    return path, []


def huge_file(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "model.onnx"
    with path.open("wb") as f:  # sparse: 3 GiB long, a few bytes on disk
        f.truncate(3 << 30)
    return path, []


def huge_input(tmp: Path) -> tuple[Path, list[str]]:
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["output0"])]
    return _graph_model(tmp / "model.onnx", nodes, [1, 3, 20_000, 20_000], [1, 3]), []


def custom_op(tmp: Path) -> tuple[Path, list[str]]:
    nodes = [helper.make_node("SquareNms", ["images"], ["output0"], domain="com.example")]
    return _graph_model(tmp / "model.onnx", nodes, [1, 3, 64, 64], [1, 6, 10], domains=("com.example",)), []


def op_missing_on_tensorrt(tmp: Path) -> tuple[Path, list[str]]:
    nodes = [helper.make_node("Unique", ["images"], ["output0"], sorted=1)]
    path = _graph_model(tmp / "model.onnx", nodes, [1, 3, 64, 64], ["n"])
    return path, ["--target-runtime", "onnxruntime", "--target-runtime", "tensorrt"]


def labels_count(tmp: Path) -> tuple[Path, list[str]]:
    path = yolo_onnx(tmp / "model.onnx", metadata={})  # no names: the output's class rows must fit the file
    (tmp / "labels.txt").write_text("person\ncar\nbus\n")
    return path, ["--labels", str(tmp / "labels.txt")]


def labels_names(tmp: Path) -> tuple[Path, list[str]]:
    path = yolo_onnx(tmp / "model.onnx")
    (tmp / "labels.txt").write_text("car\nperson\n")
    return path, ["--labels", str(tmp / "labels.txt")]


def classifier_labels(tmp: Path) -> tuple[Path, list[str]]:
    (tmp / "labels.txt").write_text("red\ngreen\nblue\nwhite\n")
    return classifier_onnx(tmp / "model.onnx"), ["--labels", str(tmp / "labels.txt"), "--task", "classification"]


def wrong_task(tmp: Path) -> tuple[Path, list[str]]:
    return yolo_onnx(tmp / "model.onnx"), ["--task", "classification"]


def segment_model(tmp: Path) -> tuple[Path, list[str]]:
    return yolo_onnx(tmp / "model.onnx", metadata=ultralytics_metadata(["person", "car"], task="segment")), []


CASES: dict[str, tuple[Callable[[Path], tuple[Path, list[str]]], str]] = {
    "malformed file": (malformed, "not a readable ONNX model"),
    "external data": (external_data, "keeps its data in the external file 'weights.bin'"),
    "absurd file size": (huge_file, "over the 1,073,741,824-byte limit"),
    "absurd input size": (huge_input, "image sides must be 8..4096 pixels"),
    "unknown op": (custom_op, "onnxruntime cannot run op(s) com.example:SquareNms"),
    "op the target runtime lacks": (op_missing_on_tensorrt, "tensorrt cannot run op(s) Unique"),
    "labels file longer than the yolo output": (labels_count, "a yolo head with 2 classes, but there are 3 labels"),
    "labels file disagreeing with the model's names": (labels_names, "label 0 is 'car', but the model's metadata"),
    "classifier output shorter than the labels": (classifier_labels, "4 labels need [batch, 4]"),
    "task other than the model's": (wrong_task, "metadata says task detection, not --task classification"),
    "segmentation model": (segment_model, "an Ultralytics 'segment' model"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_and_nothing_published(tmp_path: Path, case: str) -> None:
    make, phrase = CASES[case]
    model, extra = make(tmp_path)
    pair = generate_keypair(tmp_path / "pkg.key")
    store = tmp_path / "store"
    args = ["package", "--onnx", str(model), "--task", "detection", "--name", "external", "--store", str(store),
            "--signing-key", str(pair.private), *extra]
    line = one_line_error(run(*args))
    assert phrase in line, line
    assert [p for p in store.rglob("*") if p.is_file()] == [], "nothing may be published"
