"""ONNX external-data references must stay inside the package directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.errors import PackageRejected
from edge.onnx_guard import check_onnx_file, check_package_models
from tests.edge.package_factory import build_package, onnx_model, with_external_weight

WEIGHT_BYTES = 10 * 64 * 4  # the factory's Gemm weight: 10 classes x 8*8 inputs, float32


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    d = tmp_path / "pkg"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"s" * WEIGHT_BYTES)
    return d


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def _external(location: str, pkg: Path, **kw: int) -> Path:
    model = onnx_model()
    with_external_weight(model, location, **kw)
    return _save(model, pkg / "model.onnx")


def test_plain_model_passes(pkg: Path) -> None:
    check_onnx_file(_save(onnx_model(), pkg / "model.onnx"), pkg)


def test_external_data_inside_the_package_passes(pkg: Path) -> None:
    (pkg / "weights.bin").write_bytes(b"\0" * WEIGHT_BYTES)
    check_onnx_file(_external("weights.bin", pkg), pkg)


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("../secret.bin", "climbs out"),
        ("sub/../../secret.bin", "climbs out"),
        ("/etc/passwd", "absolute"),
        ("missing.bin", "missing"),
        ("", "no location"),
    ],
)
def test_external_data_escaping_or_missing_is_refused(pkg: Path, location: str, why: str) -> None:
    with pytest.raises(PackageRejected, match=why):
        check_onnx_file(_external(location, pkg), pkg)


def test_symlink_escaping_the_package_is_refused(pkg: Path) -> None:
    os.symlink(pkg.parent / "secret.bin", pkg / "weights.bin")
    with pytest.raises(PackageRejected, match="outside the package"):
        check_onnx_file(_external("weights.bin", pkg), pkg)


def test_symlink_within_the_package_is_refused_too(pkg: Path) -> None:
    (pkg / "real.bin").write_bytes(b"\0" * WEIGHT_BYTES)
    os.symlink("real.bin", pkg / "weights.bin")
    with pytest.raises(PackageRejected, match="not a regular file"):
        check_onnx_file(_external("weights.bin", pkg), pkg)


def test_read_past_the_end_of_the_external_file_is_refused(pkg: Path) -> None:
    (pkg / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(PackageRejected, match="has only 16"):
        check_onnx_file(_external("weights.bin", pkg), pkg)


def test_external_tensor_in_a_subgraph_attribute_is_found(pkg: Path) -> None:
    hidden = numpy_helper.from_array(np.zeros((2,), np.float32), "hidden")
    hidden.ClearField("raw_data")
    hidden.data_location = TensorProto.EXTERNAL
    entry = hidden.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    then_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=hidden)],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(2, np.float32)))],
        "else",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "outer",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(PackageRejected, match=r"tensor 'hidden'.*climbs out"):
        check_onnx_file(_save(helper.make_model(graph), pkg / "model.onnx"), pkg)


def test_model_file_that_is_a_symlink_is_refused(pkg: Path) -> None:
    real = _save(onnx_model(), pkg.parent / "elsewhere.onnx")
    os.symlink(real, pkg / "model.onnx")
    with pytest.raises(PackageRejected, match="not a regular file"):
        check_onnx_file(pkg / "model.onnx", pkg)


def test_garbage_is_not_a_model(pkg: Path) -> None:
    (pkg / "model.onnx").write_bytes(b"\xff\xfe not protobuf at all \x00\x01")
    with pytest.raises(PackageRejected, match="not a readable ONNX model"):
        check_onnx_file(pkg / "model.onnx", pkg)


def test_package_check_covers_every_onnx_variant(pkg: Path) -> None:
    manifest, files = build_package("digits", 1, precisions=("fp32", "int8"), external_location="../secret.bin")
    for name, data in files.items():
        (pkg / name).write_bytes(data)
    with pytest.raises(PackageRejected, match=r"model.fp32.onnx.*climbs out"):
        check_package_models(pkg, manifest)
