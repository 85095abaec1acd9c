"""Variants of an external model, built and judged like the trainer's: FP32 as given, FP16 by the trainer's converter
(cloud.detection.fp16: FP16 weights and math, float32 input and outputs), INT8 from calibration images.

FP16 and INT8 are kept only when their task figure (accuracy, or mAP@.5:.95) is within the drop budget of FP32's on
the eval set and they reproduce FP32 on the golden samples as closely as a device's smoke test will demand;
otherwise they are recorded as rejected with the figures, as the trainer records them. FP16 is recorded for GPUs
(target cuda), as the trainer records it: CPU ONNX Runtime runs its nodes in float32, so its figures here are those
of the FP16-rounded weights.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from cloud.byo.evaluate import EvalSet, Outputs, Quality, quality, run_model
from cloud.cpu_features import CpuInfo, detect_cpu
from cloud.detection.float_tail import tail_nodes
from cloud.detection.fp16 import convert_detector_fp16
from cloud.errors import ExportError, ModelRefused
from cloud.latency import ort_latency
from cloud.ort_session import open_session
from cloud.quantize import choose_int8_plan, quantize_int8
from shared.integrity import sha256_file
from shared.manifest import Quantization, RejectedVariant, Target, Variant, VariantMetrics
from shared.tasks import HeadContext, TaskHead, detection_agreement

log = logging.getLogger(__name__)

FILES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
# A device's smoke test wants this much agreement of a reduced precision with FP32 on the golden samples.
GOLDEN_MIN_AGREEMENT = 0.9


@dataclass(frozen=True)
class Budget:
    """How far FP16 or INT8 may fall below FP32: mAP@.5:.95 points (detection) or accuracy (classification), 0-1."""

    map_drop: float = 0.015
    accuracy_drop: float = 0.01

    def for_task(self, task: str) -> float:
        """The budget of the task's gate figure."""
        return self.map_drop if task == "detection" else self.accuracy_drop


@dataclass
class VariantBuild:
    """What one packaging run built: accepted variants, rejected ones, and the figures behind them."""

    head: TaskHead[object]
    context: HeadContext
    eval_set: EvalSet
    golden_inputs: np.ndarray
    golden_reference: Outputs
    latency_runs: int
    cpu: CpuInfo = field(default_factory=detect_cpu)
    variants: list[Variant] = field(default_factory=list)
    rejected: list[RejectedVariant] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def agreement(self, outputs: Outputs, reference: Outputs) -> float:
        """Detection F1 or top-1 agreement of outputs with the reference's on the same inputs."""
        ours, theirs = self.head.decode(outputs), self.head.decode(reference)
        if self.head.task == "detection":
            return detection_agreement(theirs, ours).f1  # type: ignore[arg-type]
        return float(np.mean([a.index == b.index for a, b in zip(ours, theirs, strict=True)]))  # type: ignore[attr-defined]

    def accept(self, precision: str, path: Path, q: Quality, agreement: float,
               quant: Quantization | None = None, target: Target | None = None) -> None:
        """Time the file at batch 1 and record it as the trainer records a variant (on this CPU unless told)."""
        lat = ort_latency(open_session(path, 1), self.golden_inputs[:1], self.latency_runs, 1)
        self.variants.append(Variant(
            file=path.name, precision=precision, sha256=sha256_file(path),  # type: ignore[arg-type]
            bytes=path.stat().st_size,
            target=target or Target(device="cpu", cpu_features=self.cpu.recorded_features()),
            metrics=VariantMetrics(accuracy=q.accuracy, map50=q.map50, map50_95=q.map50_95, agreement=agreement,
                                   latency_ms_p50=lat.p50_ms, latency_ms_p99=lat.p99_ms),
            quantization=quant,
        ))
        for key, value in (("accuracy", q.accuracy), ("map50", q.map50), ("map50_95", q.map50_95)):
            if value is not None:
                self.figures[f"{precision}_{key}"] = value
        self.lines.append(f"{precision}: kept, {_figures(q)}, agreement with fp32 {agreement:.4f}, "
                          f"p50 {lat.p50_ms:.2f} ms, {path.stat().st_size:,} bytes")

    def reject(self, precision: str, reason: str, path: Path | None) -> None:
        """Drop the file and record why."""
        if path is not None:
            path.unlink(missing_ok=True)
        log.warning("%s rejected: %s", precision, reason)
        self.rejected.append(RejectedVariant(precision=precision, reason=reason))  # type: ignore[arg-type]
        self.lines.append(f"{precision}: REJECTED, {reason}")


def _figures(q: Quality) -> str:
    if q.accuracy is not None:
        return f"accuracy {q.accuracy:.4f}"
    return f"mAP@.5 {q.map50:.4f} mAP@.5:.95 {q.map50_95:.4f}"


def add_fp32(build: VariantBuild, source: Path, out_dir: Path, fp32_eval: Outputs) -> tuple[Path, Quality]:
    """The user's file, byte for byte, as the FP32 variant; its figures on the eval set."""
    path = out_dir / FILES["fp32"]
    shutil.copyfile(source, path)
    if build.eval_set.objectless:  # FP32 is its own reference and agrees with itself
        q = Quality(map50=1.0, map50_95=1.0)
        build.lines.append(f"fp32: found no objects in {build.eval_set.name}: its figures are 1.0 by definition")
    else:
        q = quality(build.head, build.context, fp32_eval, build.eval_set)
    build.accept("fp32", path, q, 1.0)
    return path, q


@dataclass(frozen=True)
class Verdict:
    """A reduced precision against FP32: its figures on the eval set, the drop, golden-sample agreement, and the
    eval-set outputs they came from (reused for its agreement with FP32, so each file runs over the set once)."""

    quality: Quality
    drop: float
    limit: float
    golden: float
    outputs: Outputs

    @property
    def passed(self) -> bool:
        """Within the drop budget and as close to FP32 on the golden samples as a device's smoke test demands."""
        return self.drop <= self.limit + 1e-9 and self.golden >= GOLDEN_MIN_AGREEMENT - 1e-9

    def reason(self, fp32_quality: Quality) -> str:
        """The figures behind the verdict, in one line."""
        return (f"{_figures(self.quality)} is {self.drop * 100:.2f} points below fp32's {fp32_quality.value:.4f} "
                f"(budget {self.limit * 100:.2f}); agreement with fp32 on the golden samples {self.golden:.3f} "
                f"(devices need {GOLDEN_MIN_AGREEMENT})")


def judge(build: VariantBuild, path: Path, fp32_quality: Quality, limit: float) -> Verdict:
    """Score a reduced-precision file on the eval set and the golden samples; ModelRefused if it cannot run."""
    outputs = run_model(path, build.eval_set.inputs)
    q = quality(build.head, build.context, outputs, build.eval_set)
    golden = build.agreement(run_model(path, build.golden_inputs), build.golden_reference)
    return Verdict(q, fp32_quality.value - q.value, limit, golden, outputs)


def add_fp16(build: VariantBuild, fp32_path: Path, fp32_quality: Quality, fp32_eval: Outputs,
             budget: Budget) -> None:
    """The trainer's FP16 conversion of the user's file, gated like INT8 and recorded for GPUs as the trainer does."""
    path = fp32_path.with_name(FILES["fp16"])
    if build.eval_set.objectless:
        build.reject("fp16", f"cannot be judged: the FP32 model finds no objects in {build.eval_set.name}; give "
                     "--eval-data, or calibration images with objects in them", None)
        return
    try:
        convert_detector_fp16(fp32_path, path)
    except ExportError as exc:
        build.reject("fp16", f"build failed: {exc}", path)
        return
    try:
        verdict = judge(build, path, fp32_quality, budget.for_task(build.head.task))
    except ModelRefused as exc:
        build.reject("fp16", f"cannot be run: {exc}", path)
        return
    if not verdict.passed:
        build.reject("fp16", f"over budget: {verdict.reason(fp32_quality)}", path)
        return
    agreement = build.agreement(verdict.outputs, fp32_eval)
    build.accept("fp16", path, verdict.quality, agreement, target=Target(device="cuda"))
    build.lines.append("fp16: judged and timed on CPU ONNX Runtime, which runs FP16 nodes in float32 (weights "
                       "rounded to FP16); recorded for GPUs, as the trainer records it")


def add_int8(build: VariantBuild, fp32_path: Path, fp32_quality: Quality, fp32_eval: Outputs, calib: np.ndarray,
             budget: Budget, input_name: str, samples: int, fixed_batch: int | None) -> None:
    """Quantize (QDQ, per channel, as the trainer does), then gate; a detector keeps its decode tail in float and
    retries with one more conv level in float when over budget, a classifier retries with its classifier in float."""
    path = fp32_path.with_name(FILES["int8"])
    if build.eval_set.objectless:
        build.reject("int8", f"cannot be judged: the FP32 model finds no objects in {build.eval_set.name}; give "
                     "--eval-data, or calibration images with objects in them", None)
        return
    task = build.head.task
    plan = choose_int8_plan("auto", build.cpu)
    limit = budget.for_task(task)
    batch = fixed_batch or 16
    if fixed_batch is not None:
        if len(calib) < fixed_batch:
            build.reject("int8", f"needs at least {fixed_batch} calibration images for the model's fixed batch", None)
            return
        calib = calib[: len(calib) // fixed_batch * fixed_batch]
    reason = ""
    for attempt in range(2):
        try:
            if task == "detection":
                quant = quantize_int8(fp32_path, path, calib, plan, samples=samples, input_name=input_name,
                                      calibration_batch=batch,
                                      keep_float=lambda m, e=attempt: tail_nodes(m, e),  # type: ignore[misc]
                                      skip_symbolic_shape=True)
            else:
                quant = quantize_int8(fp32_path, path, calib, plan, samples=samples, input_name=input_name,
                                      calibration_batch=batch, float_head=attempt == 1)
        except ExportError as exc:
            if attempt == 0:
                build.reject("int8", f"build failed: {exc}", path)
                return
            break  # nothing left to quantize with more layers in float: the first attempt's verdict stands
        try:
            verdict = judge(build, path, fp32_quality, limit)
        except ModelRefused as exc:
            build.reject("int8", f"cannot be run: {exc}", path)
            return
        if verdict.passed:
            agreement = build.agreement(verdict.outputs, fp32_eval)
            build.accept("int8", path, verdict.quality, agreement, quant)
            return
        reason = verdict.reason(fp32_quality)
        log.info("int8 attempt %d over budget: %s", attempt + 1, reason)
    build.reject("int8", f"over budget: {reason}", path)


def model_file_facts(model: onnx.ModelProto) -> dict[str, str]:
    """Producer and opset of the external file, for the manifest's frameworks."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = f"{model.producer_name} {model.producer_version}".strip()
    return {"onnx_producer": producer or "unknown", "onnx_opset": str(opset), "onnx_ir_version": str(model.ir_version)}
