"""Refuse ONNX files that would make the runtime read outside their package (external-data path escapes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError, Message
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from edge.errors import PackageRejected
from shared.manifest import Manifest

ONNX_PRECISIONS = frozenset({"fp32", "fp16", "int8"})


def iter_tensors(message: Message) -> Iterator[onnx.TensorProto]:
    """Every TensorProto anywhere in an ONNX message: initializers, sparse parts, attributes, subgraphs, functions."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        items = [value] if isinstance(value, Message) else value  # repeated fields come as containers
        for item in items:
            if isinstance(item, onnx.TensorProto):
                yield item
            yield from iter_tensors(item)


def resolve_external(location: str, package_dir: Path) -> Path:
    """The file an external-data location names, refusing anything that is not a regular file inside package_dir."""
    if not location:
        raise PackageRejected("external data entry has no location")
    if "\0" in location or os.path.isabs(location) or location.startswith(("\\", "/")):
        raise PackageRejected(f"external data location {location!r} is an absolute path")
    if ".." in Path(location).parts or ".." in location.replace("\\", "/").split("/"):
        raise PackageRejected(f"external data location {location!r} climbs out of the package with '..'")
    root = package_dir.resolve()
    target = root / location
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise PackageRejected(f"external data file {location!r} is missing from the package") from exc
    if not real.is_relative_to(root):
        raise PackageRejected(f"external data location {location!r} resolves outside the package (symlink)")
    if target.is_symlink() or not real.is_file():
        raise PackageRejected(f"external data location {location!r} is not a regular file in the package")
    return real


def check_onnx_file(path: Path, package_dir: Path) -> None:
    """Parse the model without loading external data and check every external reference stays inside package_dir."""
    if path.is_symlink() or not path.is_file():
        raise PackageRejected(f"{path.name}: not a regular file")
    if not path.resolve().is_relative_to(package_dir.resolve()):
        raise PackageRejected(f"{path.name}: lies outside the package directory")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise PackageRejected(f"{path.name}: not a readable ONNX model ({exc})") from exc
    for tensor in iter_tensors(model):
        if not uses_external_data(tensor):
            continue
        try:
            info = ExternalDataInfo(tensor)
        except ValueError as exc:
            raise PackageRejected(f"{path.name}: tensor {tensor.name!r} has bad external data: {exc}") from exc
        try:
            data = resolve_external(info.location, package_dir)
        except PackageRejected as exc:
            raise PackageRejected(f"{path.name}: tensor {tensor.name!r}: {exc}") from exc
        end = (info.offset or 0) + (info.length or 0)
        if end > data.stat().st_size:
            raise PackageRejected(
                f"{path.name}: tensor {tensor.name!r} reads bytes up to {end} of {info.location!r}, "
                f"which has only {data.stat().st_size}"
            )


def check_package_models(package_dir: Path, manifest: Manifest) -> None:
    """Run check_onnx_file on every ONNX variant of a package (TensorRT engines are not ONNX)."""
    for v in manifest.variants:
        if v.precision in ONNX_PRECISIONS:
            check_onnx_file(package_dir / v.file, package_dir)
