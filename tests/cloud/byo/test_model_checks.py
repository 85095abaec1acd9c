"""The static checks of an external model, without publishing: validity, metadata, labels and the recipe."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cloud.byo.model_io import classification_head, detection_head, read_io
from cloud.byo.model_metadata import ModelMetadata, read_labels_file, read_metadata, resolve_labels
from cloud.byo.onnx_file import Limits, read_checked
from cloud.byo.recipe import build_recipe, parse_overrides
from cloud.errors import ModelRefused
from tests.cloud.byo.external_models import save_with_metadata, ultralytics_metadata


def _model(nodes: list[onnx.NodeProto], input_dims: list[int | str], output_dims: list[int | str],
           inits: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_dims)], inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _saved(tmp_path: Path, model: onnx.ModelProto, metadata: dict[str, str] | None = None) -> Path:
    return save_with_metadata(model, tmp_path / "m.onnx", metadata or {})


def test_a_graph_onnx_checker_rejects_is_refused(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["nowhere"], ["out"])], [1, 3, 64, 64], [1, 3, 64, 64])
    with pytest.raises(ModelRefused, match=r"fails onnx\.checker"):
        read_checked(_saved(tmp_path, model), Limits())


def test_a_graph_whose_shapes_do_not_fit_is_refused_by_strict_shape_inference(tmp_path: Path) -> None:
    bad = numpy_helper.from_array(np.zeros((5,), dtype=np.float32), "five")
    model = _model([helper.make_node("Add", ["images", "five"], ["out"])], [1, 3, 64, 64], [1, 3, 64, 64], [bad])
    with pytest.raises(ModelRefused, match="fails ONNX shape inference"):
        read_checked(_saved(tmp_path, model), Limits())


def test_ultralytics_names_become_the_labels_and_a_labels_file_must_repeat_them(tmp_path: Path) -> None:
    model = _model([helper.make_node("Relu", ["images"], ["out"])], [1, 3, 64, 64], [1, 3, 64, 64])
    meta = read_metadata(onnx.load(str(_saved(tmp_path, model, ultralytics_metadata(["cat", "dog"])))), "m.onnx")
    assert (meta.task, meta.imgsz, meta.stride, meta.names, meta.ultralytics) == (
        "detection", (64, 64), 32, ["cat", "dog"], True)
    assert resolve_labels(None, meta, "m.onnx", 100) == ["cat", "dog"]
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    assert resolve_labels(tmp_path / "labels.txt", meta, "m.onnx", 100) == ["cat", "dog"]
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    with pytest.raises(ModelRefused, match="3 labels, but the model's metadata names 2 classes"):
        resolve_labels(tmp_path / "labels.txt", meta, "m.onnx", 100)


@pytest.mark.parametrize(("text", "phrase"), [
    ("cat\n\ndog\n", "label 1 (line 2) is blank"),
    ("cat\ndog\ncat\n", "label 'cat' appears twice"),
    ("", "no labels"),
])
def test_a_labels_file_with_gaps_or_repeats_is_refused(tmp_path: Path, text: str, phrase: str) -> None:
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(ModelRefused, match=re.escape(phrase)):
        read_labels_file(tmp_path / "labels.txt", 100)


@pytest.mark.parametrize(("props", "phrase"), [
    ({"names": "{0: 'a', 2: 'b'}"}, "expected 0..1"),
    ({"names": "__import__('os')"}, "is not a literal"),
    ({"imgsz": "[640]"}, "is not \\[height, width\\]"),
])
def test_malformed_metadata_is_refused(tmp_path: Path, props: dict[str, str], phrase: str) -> None:
    model = _model([helper.make_node("Relu", ["images"], ["out"])], [1, 3, 64, 64], [1, 3, 64, 64])
    with pytest.raises(ModelRefused, match=phrase):
        read_metadata(onnx.load(str(_saved(tmp_path, model, props))), "m.onnx")


def test_preprocess_overrides_read_sizes_fractions_and_lists() -> None:
    assert parse_overrides(["resize=320x480", "scale=1/255", "mean=0.5,0.5,0.5", "resize_mode=stretch"]) == {
        "resize": [320, 480], "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "resize_mode": "stretch"}
    with pytest.raises(ModelRefused, match="key=value with a key among"):
        parse_overrides(["brightness=2"])


def test_a_dynamic_input_needs_its_size_from_metadata_or_the_flags() -> None:
    model = _model([helper.make_node("Relu", ["images"], ["out"])], ["b", 3, "h", "w"], ["b", 3, "h", "w"])
    io = read_io(model, Limits(), "m.onnx")
    with pytest.raises(ModelRefused, match="give --preprocess resize=HEIGHTxWIDTH"):
        build_recipe(io, ModelMetadata(), "classification", {}, "m.onnx")
    recipe = build_recipe(io, ModelMetadata(imgsz=(96, 128)), "detection", {}, "m.onnx")
    assert (recipe.resize, recipe.resize_mode) == ((96, 128), "letterbox")
    assert build_recipe(io, ModelMetadata(), "classification", {"resize": [40, 40]}, "m.onnx").resize == (40, 40)


def _two_outputs_model(names: list[str], dims: list[list[int | str]]) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", ["images"], [n]) for n in names]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in zip(names, dims,
                                                                                                       strict=True)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_detection_format_is_read_from_the_output_shapes() -> None:
    labels = ["a", "b", "c"]
    yolo = read_io(_two_outputs_model(["output0"], [[1, 7, 8400]]), Limits(), "m")
    packed = read_io(_two_outputs_model(["output0"], [[1, 300, 6]]), Limits(), "m")
    decoded = read_io(_two_outputs_model(["boxes", "scores", "class_ids"], [[1, 10, 4], [1, 10], [1, 10]]),
                      Limits(), "m")
    assert detection_head("auto", yolo, labels, "m").format == "yolo"
    assert detection_head("auto", packed, labels, "m").format == "packed"
    assert detection_head("auto", decoded, labels, "m").format == "decoded"
    with pytest.raises(ModelRefused, match="needs outputs"):
        detection_head("decoded", yolo, labels, "m")


def test_a_classifier_ending_in_softmax_is_read_as_probabilities() -> None:
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]), helper.make_node("Softmax", ["flat"], ["out"])]
    io = read_io(_model(nodes, ["n", 3, 32, 32], ["n", 3]), Limits(), "m")
    assert classification_head("auto", io, ["r", "g", "b"], "m").format == "probabilities"
    assert classification_head("logits", io, ["r", "g", "b"], "m").format == "logits"
