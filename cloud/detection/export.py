"""Export the detector as FP32, FP16 and INT8 ONNX, score each on the held-out split and keep those within budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud.config import ExportConfig
from cloud.cpu_features import CpuInfo, detect_cpu
from cloud.detection.coco_eval import MapScores, coco_map
from cloud.detection.config import DetectionConfig
from cloud.detection.float_tail import tail_nodes
from cloud.detection.fp16 import convert_detector_fp16
from cloud.detection.gates import MapGate, map_gate
from cloud.detection.model import DetectorExport
from cloud.detection.onnx_export import OUTPUT_NAMES, export_detector
from cloud.detection.samples import DetectionSplit
from cloud.detection.train import predict_torch
from cloud.errors import ExportError
from cloud.export_onnx import tensor_specs
from cloud.export_pipeline import FILES
from cloud.latency import ort_latency
from cloud.ort_session import ORT_ERRORS, open_session
from cloud.quantize import choose_int8_plan, quantize_int8
from shared.golden import GOLDEN_FILE, detection_golden_arrays, golden_bytes
from shared.integrity import sha256_file
from shared.manifest import Golden, Quantization, RejectedVariant, Target, TensorSpec, Variant, VariantMetrics
from shared.object_store import atomic_write
from shared.task_contract import DecodedDetectionHeadSpec, DetectionThresholds
from shared.tasks import HeadContext, detection_agreement
from shared.tasks.detection import DecodedDetectionHead, Detections

log = logging.getLogger(__name__)
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]
_BATCH = 64


def head_spec(cfg: DetectionConfig) -> DecodedDetectionHeadSpec:
    """The manifest's output contract for this detector: decoded in graph, xyxy input pixels, peak NMS in graph."""
    return DecodedDetectionHeadSpec(
        format="decoded", box_format="xyxy", box_space="input_pixels", nms_in_graph=True,
        thresholds=DetectionThresholds(score=cfg.score_threshold, iou=0.45, max_detections=cfg.top_k),
    )


@dataclass
class DetectionExportReport:
    """What export produced: variants to publish, rejected ones with reasons, golden samples and I/O specs."""

    variants: list[Variant]
    rejected: list[RejectedVariant]
    golden: Golden
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    torch_scores: MapScores
    gates: list[MapGate] = field(default_factory=list)

    def summary(self) -> str:
        """One line per variant tried: verdict, mAP figures and latency."""
        lines = [f"export: torch test mAP@.5 {self.torch_scores.map50:.4f}, "
                 f"mAP@.5:.95 {self.torch_scores.map50_95:.4f}"]
        for v in self.variants:
            m = v.metrics
            lines.append(f"  {v.precision:5s} pass      mAP@.5 {m.map50:.4f} mAP@.5:.95 {m.map50_95:.4f} "
                         f"F1 vs fp32 {m.agreement:.4f} p50 {m.latency_ms_p50:.3f} ms {v.bytes:,} bytes")
        for r in self.rejected:
            lines.append(f"  {r.precision:5s} REJECTED  {r.reason}")
        return "\n".join(lines)


class _Scorer:
    """Decodes outputs through the manifest's head and scores them, so cloud figures match a device's."""

    def __init__(self, split: DetectionSplit, labels: list[str], cfg: DetectionConfig) -> None:
        self.split = split
        self.labels = labels
        context = HeadContext(labels=tuple(labels), output_names=OUTPUT_NAMES, input_hw=cfg.image_size)
        self.head = DecodedDetectionHead(head_spec(cfg), context)

    def outputs(self, decoded: Decoded) -> dict[str, np.ndarray]:
        return {"boxes": decoded[0], "scores": decoded[1], "class_ids": decoded[2]}

    def scores(self, decoded: Decoded) -> MapScores:
        cands = self.head.candidates(self.outputs(decoded))
        boxes = np.stack([c[0] for c in cands])
        return coco_map(self.split.boxes, self.split.classes, boxes, np.stack([c[1] for c in cands]),
                        np.stack([c[2] for c in cands]), len(self.labels))

    def detections(self, decoded: Decoded) -> list[Detections]:
        return self.head.decode(self.outputs(decoded))


def _run_onnx(path: Path, inputs: np.ndarray) -> Decoded:
    session = open_session(path, 0)
    out: list[list[np.ndarray]] = [[], [], []]
    try:
        for i in range(0, len(inputs), _BATCH):
            for acc, arr in zip(out, session.run(None, {"input": inputs[i : i + _BATCH]}), strict=True):
                acc.append(arr)
    except ORT_ERRORS as exc:
        raise ExportError(f"ONNX Runtime failed on {path.name}: {exc}") from exc
    boxes, scores, ids = (np.concatenate(a) for a in out)
    return boxes.astype(np.float32), scores.astype(np.float32), ids


@dataclass
class _Run:
    """State shared by the variant builders of one export."""

    cfg: ExportConfig
    dcfg: DetectionConfig
    scorer: _Scorer
    test_inputs: np.ndarray
    reference_dets: list[Detections]
    cpu: CpuInfo
    variants: list[Variant] = field(default_factory=list)
    rejected: list[RejectedVariant] = field(default_factory=list)
    gates: list[MapGate] = field(default_factory=list)

    def verdict(self, precision: str, decoded: Decoded, reference: MapScores, ref_name: str) -> MapGate:
        f1 = detection_agreement(self.reference_dets, self.scorer.detections(decoded)).f1
        return map_gate(precision, self.scorer.scores(decoded), reference, self.dcfg.map_drop_budget, f1, ref_name)

    def record(self, gate: MapGate, path: Path, target: Target, quant: Quantization | None = None) -> None:
        """Keep a passing variant with its figures and latency; remove a failing one's file (FP32's stays a while)."""
        self.gates.append(gate)
        log.info("%s: %s", gate.precision, gate.reason)
        if not gate.passed:
            self.reject(gate.precision, gate.reason, None if gate.precision == "fp32" else path)
            return
        threads = self.cfg.latency_threads
        lat = ort_latency(open_session(path, threads), self.test_inputs, self.cfg.latency_runs, threads)
        self.variants.append(Variant(
            file=path.name, precision=gate.precision, sha256=sha256_file(path),  # type: ignore[arg-type]
            bytes=path.stat().st_size, target=target,
            metrics=VariantMetrics(map50=gate.scores.map50, map50_95=gate.scores.map50_95, agreement=gate.agreement,
                                   latency_ms_p50=lat.p50_ms, latency_ms_p99=lat.p99_ms),
            quantization=quant,
        ))

    def reject(self, precision: str, reason: str, path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)
        log.warning("%s rejected: %s", precision, reason)
        self.rejected.append(RejectedVariant(precision=precision, reason=reason))  # type: ignore[arg-type]

    def cpu_target(self) -> Target:
        return Target(device="cpu", cpu_features=self.cpu.recorded_features())


def export_detection(
    model: DetectorExport, labels: list[str], test: DetectionSplit, test_inputs: np.ndarray,
    calib_inputs: np.ndarray, cfg: ExportConfig, dcfg: DetectionConfig, out_dir: Path,
) -> DetectionExportReport:
    """Build the configured variants into out_dir; only files of variants that passed their gate remain there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = _Scorer(test, labels, dcfg)
    torch_out = predict_torch(model, test_inputs, _BATCH)
    torch_scores = scorer.scores(torch_out)
    run = _Run(cfg, dcfg, scorer, test_inputs, scorer.detections(torch_out), detect_cpu())
    fp32_path = out_dir / FILES["fp32"]
    written = [out_dir / name for name in FILES.values()]
    try:
        export_detector(model, (3, *dcfg.image_size), fp32_path)
        inputs, outputs = tensor_specs(fp32_path)
        reference, ref_name = torch_scores, "torch"
        if "fp32" in cfg.precisions:
            gate = run.verdict("fp32", _run_onnx(fp32_path, test_inputs), torch_scores, "torch")
            run.record(gate, fp32_path, run.cpu_target())
            if gate.passed:
                reference, ref_name = gate.scores, "fp32"
        if "fp16" in cfg.precisions:
            _fp16(run, fp32_path, reference, ref_name)
        if "int8" in cfg.precisions:
            _int8(run, fp32_path, calib_inputs, reference, ref_name)
        if not any(v.file == fp32_path.name for v in run.variants):
            fp32_path.unlink(missing_ok=True)
        golden = _golden(out_dir, test_inputs, run.reference_dets, cfg.golden_samples)
    except BaseException:
        for path in [*written, out_dir / GOLDEN_FILE]:
            path.unlink(missing_ok=True)
        raise
    return DetectionExportReport(run.variants, run.rejected, golden, inputs, outputs, torch_scores, run.gates)


def _fp16(run: _Run, fp32_path: Path, reference: MapScores, ref_name: str) -> None:
    path = fp32_path.with_name(FILES["fp16"])
    try:
        convert_detector_fp16(fp32_path, path)
        gate = run.verdict("fp16", _run_onnx(path, run.test_inputs), reference, ref_name)
        run.record(gate, path, Target(device="cuda"))
    except ExportError as exc:
        run.reject("fp16", f"build failed: {exc}", path)


def _int8(run: _Run, fp32_path: Path, calib: np.ndarray, reference: MapScores, ref_name: str) -> None:
    """INT8 with the decode and last convs in float; over budget, once more with one more conv level in float."""
    path = fp32_path.with_name(FILES["int8"])
    cfg = run.cfg
    plan = choose_int8_plan(cfg.int8_mode, run.cpu)
    levels = {"auto": [0, 1], "always": [1], "never": [0]}[cfg.int8_float_head]
    try:
        for i, extra in enumerate(levels):
            quant = quantize_int8(
                fp32_path, path, calib, plan, samples=cfg.calibration_samples, calibration=cfg.int8_calibration,
                keep_float=lambda m, e=extra: tail_nodes(m, e),  # type: ignore[misc]
                skip_symbolic_shape=True,
            )
            gate = run.verdict("int8", _run_onnx(path, run.test_inputs), reference, ref_name)
            if gate.passed or i == len(levels) - 1:
                break
            log.info("int8 with only the decode tail in float missed its budget; retrying with one more conv level")
        run.record(gate, path, run.cpu_target(), quant)
    except ExportError as exc:
        run.reject("int8", f"build failed: {exc}", path)


def _golden(out_dir: Path, inputs: np.ndarray, detections: list[Detections], count: int) -> Golden:
    """golden.npz in the detection form: the first test images that have reference detections."""
    with_objects = [i for i, d in enumerate(detections) if d][:count] or list(range(min(count, len(inputs))))
    golden = detection_golden_arrays(inputs[with_objects], [detections[i] for i in with_objects])
    path = out_dir / GOLDEN_FILE
    atomic_write(path, golden_bytes(golden))
    return Golden(file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size, count=len(with_objects))
