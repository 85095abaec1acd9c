"""`edgeferry package`: an external ONNX file to a signed package like the trainer's, or one line and nothing published.

Order: signing key and store first (fail before work), then every check of the file (size, parse, external data,
onnx.checker, shape inference, ops per target runtime, metadata, labels against outputs, preprocessing), then the
package's own inputs, FP32 run, golden samples, FP16 and optional INT8 with their gates, and publish last (files,
signature, manifest, latest.json), exactly as the trainer publishes.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import onnx

from cloud.byo.evaluate import EvalSet, Outputs, load_classification_eval, load_detection_eval, pseudo_eval, run_model
from cloud.byo.inputs import Inputs, calibration_inputs, synthetic_inputs
from cloud.byo.model_io import ModelIO, classification_head, detection_head, read_io
from cloud.byo.model_metadata import ModelMetadata, read_metadata, resolve_labels
from cloud.byo.onnx_file import Limits, read_checked
from cloud.byo.op_support import check_ops
from cloud.byo.recipe import build_recipe, parse_overrides
from cloud.byo.variants import Budget, VariantBuild, add_fp16, add_fp32, add_int8, model_file_facts
from cloud.errors import GateError, ModelRefused, PublishError
from cloud.export_onnx import tensor_specs
from cloud.golden import golden_indices, write_detection_golden, write_golden
from cloud.pipeline import frameworks
from cloud.publish import Published, next_version, preflight_store, publish
from edge.backends.capabilities import ONNXRUNTIME, OPENVINO
from shared.errors import StoreError, TaskContractError
from shared.golden import GOLDEN_FILE
from shared.integrity import sha256_file
from shared.manifest import DatasetInfo, Golden, Manifest, Preprocess, TensorSpec, TrainInfo, utcnow
from shared.names import check_ident
from shared.object_store import ObjectStore
from shared.signing import load_private_key
from shared.store_config import StoreConfig
from shared.task_contract import HeadSpec
from shared.tasks import HeadContext, TaskHead, make_head

log = logging.getLogger(__name__)
TASKS = ("detection", "classification")
# Golden inputs travel to every device: a 640 px model's image is 4.9 MB of float32, so large inputs get fewer.
GOLDEN_BUDGET_BYTES = 16 << 20
_META_VALUE_CHARS = 4000


@dataclass(frozen=True)
class PackageRequest:
    """Everything `edgeferry package` was given."""

    onnx: Path
    task: str
    name: str
    store: str
    signing_key: Path
    labels: Path | None = None
    format: str = "auto"
    preprocess: list[str] = field(default_factory=list)
    calibration_dir: Path | None = None
    eval_data: Path | None = None
    target_runtimes: list[str] = field(default_factory=lambda: [ONNXRUNTIME, OPENVINO])
    fp16: bool = True
    int8: bool = True
    budget: Budget = field(default_factory=Budget)
    golden_samples: int = 8
    golden_budget_bytes: int = GOLDEN_BUDGET_BYTES
    calibration_images: int = 256
    latency_runs: int = 50
    pointer_ttl_days: float = 30.0
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Packaged:
    """What was published, and one line per variant tried."""

    manifest: Manifest
    published: Published
    lines: list[str]


@dataclass(frozen=True)
class Checked:
    """The file after every static check: its model, metadata, labels, I/O, output contract and recipe."""

    model: onnx.ModelProto
    meta: ModelMetadata
    labels: list[str]
    io: ModelIO
    head: HeadSpec
    recipe: Preprocess


def check_model(req: PackageRequest) -> Checked:
    """Every check that needs only the file and the flags; ModelRefused names the first failure."""
    if req.task not in TASKS:
        raise ModelRefused(f"--task {req.task!r}: choose detection or classification")
    where = str(req.onnx)
    model = read_checked(req.onnx, req.limits)
    check_ops(model, req.target_runtimes, where)
    io = read_io(model, req.limits, where)
    meta = read_metadata(model, where)
    if meta.task is not None and meta.task != req.task:
        raise ModelRefused(f"{where}: the model's metadata says task {meta.task}, not --task {req.task}")
    labels = resolve_labels(req.labels, meta, where, req.limits.max_labels)
    head: HeadSpec = (detection_head(req.format, io, labels, where) if req.task == "detection"
                      else classification_head(req.format, io, labels, where))
    recipe = build_recipe(io, meta, req.task, parse_overrides(list(req.preprocess)), where)
    return Checked(model, meta, labels, io, head, recipe)


def _reference(checked: Checked, path: Path, inputs: np.ndarray) -> tuple[TaskHead[object], HeadContext, Outputs]:
    """FP32's outputs on the package's inputs, decoded once so a misfit with the labels is refused here."""
    context = HeadContext(labels=tuple(checked.labels), output_names=tuple(checked.io.outputs),
                          input_hw=(int(checked.recipe.resize[0]), int(checked.recipe.resize[1])))
    head = make_head(checked.head, context)
    outputs = run_model(path, inputs)
    bad = [n for n, a in outputs.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise ModelRefused(f"{path}: outputs {bad} hold NaN or infinity on the package's inputs")
    try:
        head.decode(outputs)
    except TaskContractError as exc:
        raise ModelRefused(f"{path}: its outputs do not fit the {len(checked.labels)} labels: {exc}") from exc
    return head, context, outputs


def _golden(out_dir: Path, head: TaskHead[object], pool: np.ndarray, outputs: Outputs, count: int
            ) -> tuple[Golden, np.ndarray]:
    """golden.npz: detectors' first pool images with objects (others if none), classifiers' clearest by class."""
    results = head.decode(outputs)
    if head.task == "detection":
        idx = [i for i, r in enumerate(results) if r][:count] or list(range(min(count, len(pool))))  # type: ignore[arg-type]
        golden = write_detection_golden(out_dir / GOLDEN_FILE, pool[idx], [results[i] for i in idx])  # type: ignore[misc]
        return golden, np.asarray(idx)
    logits = next(iter(outputs.values())) if len(outputs) == 1 else outputs[head.spec.output]  # type: ignore[attr-defined]
    picks = golden_indices(np.asarray(logits, dtype=np.float32), count)
    return write_golden(out_dir / GOLDEN_FILE, pool[picks], np.asarray(logits)[picks]), picks


def _specs(path: Path, layout: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The file's inputs and outputs (cloud.export_onnx), image-shaped ones in the model's layout, others NC."""
    inputs, outputs = tensor_specs(path)

    def laid(s: TensorSpec) -> TensorSpec:
        return s.model_copy(update={"layout": layout if len(s.shape) == 4 else "NC"})

    return [laid(s) for s in inputs], [laid(s) for s in outputs]


def package_model(req: PackageRequest) -> Packaged:
    """Check, build, gate and publish; on any refusal nothing is published and no file is left behind."""
    check_ident(req.name, "model name")
    key = load_private_key(req.signing_key)
    store = preflight_store(StoreConfig(uri=req.store), req.name)
    checked = check_model(req)
    calib: Inputs | None = None
    if req.calibration_dir is not None:
        calib = calibration_inputs(req.calibration_dir, checked.recipe, req.calibration_images)
    pool = calib if calib is not None else synthetic_inputs(max(2 * req.golden_samples, 16), checked.recipe)
    with tempfile.TemporaryDirectory(prefix="edgeferry-package-") as tmp:
        out_dir = Path(tmp)
        head, context, pool_outputs = _reference(checked, req.onnx, pool.arrays)
        per_image = pool.arrays[0].nbytes
        count = max(1, min(req.golden_samples, req.golden_budget_bytes // per_image))
        golden, golden_idx = _golden(out_dir, head, pool.arrays, pool_outputs, count)
        eval_set = _eval_set(req, checked, head, pool, pool_outputs)
        build = VariantBuild(head, context, eval_set, pool.arrays[golden_idx],
                             {k: v[golden_idx] for k, v in pool_outputs.items()}, req.latency_runs)
        fp32_eval = run_model(req.onnx, eval_set.inputs) if req.eval_data is not None else pool_outputs
        fp32_path, fp32_quality = add_fp32(build, req.onnx, out_dir, fp32_eval)
        if req.fp16:
            add_fp16(build, fp32_path, fp32_quality, fp32_eval, req.budget)
        if calib is not None and req.int8:
            batch = checked.io.input_dims[0]
            add_int8(build, fp32_path, fp32_quality, fp32_eval, calib.arrays, req.budget, checked.io.input_name,
                     req.calibration_images, batch if isinstance(batch, int) else None)
        if not build.variants:  # pragma: no cover - FP32 is always kept once it ran
            raise GateError("no variant passed its gate, nothing published")
        manifest = _manifest(req, checked, store, build, golden, eval_set, calib, fp32_path)
        try:
            published = publish(store, out_dir, manifest, key, timedelta(days=req.pointer_ttl_days))
        except StoreError as exc:
            raise PublishError(f"publish to {store.uri} failed, latest.json unchanged: {exc}") from exc
    return Packaged(manifest, published, build.lines)


def _eval_set(req: PackageRequest, checked: Checked, head: TaskHead[object], pool: Inputs, outputs: Outputs
              ) -> EvalSet:
    if req.eval_data is None:
        return pseudo_eval(pool.source, pool.sha256, pool.arrays, head, outputs)
    if req.task == "detection":
        return load_detection_eval(req.eval_data, checked.recipe, checked.labels)
    return load_classification_eval(req.eval_data, checked.recipe, checked.labels)


def _manifest(req: PackageRequest, checked: Checked, store: ObjectStore, build: VariantBuild, golden: Golden,
              eval_set: EvalSet, calib: Inputs | None, fp32_path: Path) -> Manifest:
    inputs, outputs = _specs(fp32_path, checked.io.layout)
    props = {k: v[:_META_VALUE_CHARS] for k, v in checked.meta.props.items()}
    config = {
        "source": "edgeferry package", "onnx_file": req.onnx.name, "onnx_sha256": sha256_file(req.onnx),
        "task": req.task, "format": checked.head.format, "metadata": props, "preprocess_overrides": req.preprocess,
        "calibration": calib.source if calib is not None else None,
        "eval_data": str(req.eval_data) if req.eval_data is not None else None,
        "quality_reference": "eval data" if req.eval_data is not None else "the FP32 model's own results",
        "target_runtimes": list(req.target_runtimes),
        "budget": {"map_drop": req.budget.map_drop, "accuracy_drop": req.budget.accuracy_drop},
    }
    return Manifest(
        name=req.name, version=next_version(store, req.name), created_at=utcnow(),
        task=req.task,  # type: ignore[arg-type]
        head=checked.head, frameworks={**frameworks(), **model_file_facts(checked.model)},
        inputs=inputs, outputs=outputs, preprocess=checked.recipe, labels=checked.labels,
        variants=build.variants, rejected=build.rejected, golden=golden,
        train=TrainInfo(
            config=config,
            dataset=DatasetInfo(name=eval_set.name, sha256=eval_set.sha256,
                                num_train=len(calib.arrays) if calib is not None else 0, num_val=0,
                                num_test=len(eval_set.inputs)),
            metrics=build.figures, seed=0,
        ),
    )
