"""What an external model says about itself (Ultralytics' metadata_props) and the labels it is packaged with.

Ultralytics writes `task`, `imgsz`, `stride` and `names` (a Python dict literal, class index -> name) into every
ONNX export. Labels policy: with --labels, the file is the truth and `names`, where present, must list the same
names in the same order; without --labels, `names` become the labels; with neither, the model is refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from cloud.errors import ModelRefused

# Ultralytics task names -> edgeferry tasks; segment/pose/obb heads carry outputs no edgeferry head decodes.
_TASKS = {"detect": "detection", "classify": "classification"}
MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class ModelMetadata:
    """The fields edgeferry reads from metadata_props (None when absent), and every prop as written."""

    task: str | None = None
    imgsz: tuple[int, int] | None = None
    stride: int | None = None
    names: list[str] | None = None
    props: dict[str, str] = field(default_factory=dict)

    @property
    def ultralytics(self) -> bool:
        """The file came from Ultralytics' exporter (its recipe: letterbox, RGB, 0-1, pad 114)."""
        return "ultralytics" in self.props.get("author", "").lower() or (
            self.names is not None and self.stride is not None)


def read_metadata(model: onnx.ModelProto, where: str) -> ModelMetadata:
    """Parse the props edgeferry uses; a malformed one is refused (the exporter's promise would be wrong)."""
    props = {p.key: p.value for p in model.metadata_props}
    task = props.get("task")
    if task is not None and task not in _TASKS:
        raise ModelRefused(f"{where}: an Ultralytics {task!r} model; edgeferry packages detect and classify models "
                           "(export a detection or classification model)")
    return ModelMetadata(
        task=_TASKS[task] if task is not None else None,
        imgsz=_imgsz(props.get("imgsz"), where),
        stride=_int(props.get("stride"), "stride", where),
        names=_names(props.get("names"), where),
        props=props,
    )


def _literal(text: str, key: str, where: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ModelRefused(f"{where}: metadata {key}={text[:80]!r} is not a literal ({exc})") from exc


def _int(text: str | None, key: str, where: str) -> int | None:
    if text is None:
        return None
    value = _literal(text, key, where)
    if isinstance(value, list) and value:
        value = max(value)  # newer exports write stride per level
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelRefused(f"{where}: metadata {key}={text[:80]!r} is not a positive integer")
    return value


def _imgsz(text: str | None, where: str) -> tuple[int, int] | None:
    if text is None:
        return None
    value = _literal(text, "imgsz", where)
    if isinstance(value, int):
        value = [value, value]
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ModelRefused(f"{where}: metadata imgsz={text[:80]!r} is not [height, width]")
    return int(value[0]), int(value[1])


def _names(text: str | None, where: str) -> list[str] | None:
    if text is None:
        return None
    value = _literal(text, "names", where)
    if isinstance(value, dict):
        keys = sorted(value)
        if keys != list(range(len(keys))):
            raise ModelRefused(f"{where}: metadata names has indices {keys[:10]}, expected 0..{len(keys) - 1}")
        value = [value[k] for k in keys]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelRefused(f"{where}: metadata names={text[:80]!r} is not a list or dict of class names")
    return list(value)


def read_labels_file(path: Path, limit: int) -> list[str]:
    """One class name per line, in output order; blank trailing lines ignored, blank or repeated names refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelRefused(f"{path}: cannot read the labels file ({exc})") from exc
    lines = [line.strip() for line in text.rstrip("\r\n\t ").splitlines()]
    return check_labels(lines, str(path), limit)


def check_labels(labels: list[str], where: str, limit: int) -> list[str]:
    """Non-empty, unique, short names, not more than `limit` of them."""
    if not labels:
        raise ModelRefused(f"{where}: no labels (one class name per line, in the model's output order)")
    if len(labels) > limit:
        raise ModelRefused(f"{where}: {len(labels):,} labels, over the limit of {limit:,}")
    for i, name in enumerate(labels):
        if not name:
            raise ModelRefused(f"{where}: label {i} (line {i + 1}) is blank")
        if len(name) > MAX_LABEL_CHARS:
            raise ModelRefused(f"{where}: label {i} is {len(name)} characters long (at most {MAX_LABEL_CHARS})")
    seen: set[str] = set()
    for i, name in enumerate(labels):
        if name in seen:
            raise ModelRefused(f"{where}: label {name!r} appears twice (again as label {i})")
        seen.add(name)
    return labels


def resolve_labels(labels_file: Path | None, meta: ModelMetadata, where: str, limit: int) -> list[str]:
    """The package's labels by the policy above."""
    if labels_file is None:
        if meta.names is None:
            raise ModelRefused(f"{where}: no --labels given and the model has no class names in its metadata")
        return check_labels(meta.names, f"{where} metadata names", limit)
    labels = read_labels_file(labels_file, limit)
    if meta.names is not None and meta.names != labels:
        if len(meta.names) != len(labels):
            raise ModelRefused(f"{labels_file}: {len(labels)} labels, but the model's metadata names "
                               f"{len(meta.names)} classes")
        i = next(i for i, (a, b) in enumerate(zip(labels, meta.names, strict=True)) if a != b)
        raise ModelRefused(f"{labels_file}: label {i} is {labels[i]!r}, but the model's metadata calls class {i} "
                           f"{meta.names[i]!r}; fix the file or leave --labels out to use the model's names")
    return labels
