"""Export a sensor model as FP32/FP16/INT8 ONNX with the cloud's exporter and quantizer, gate each variant in the
task's own terms (classification: accuracy/F1; anomaly: AUROC and false alarms at its calibrated threshold)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from cloud.config import ExportConfig
from cloud.cpu_features import CpuInfo, detect_cpu
from cloud.errors import ExportError
from cloud.export_onnx import convert_fp16, export_fp32, tensor_specs
from cloud.golden import golden_indices, write_golden
from cloud.latency import ort_latency
from cloud.ort_session import CPU, best_provider, open_session, predict
from cloud.quantize import choose_int8_plan, quantize_int8
from cloud.sensor.calibration import calibrate_threshold, over_threshold
from cloud.sensor.config import AnomalyConfig
from cloud.sensor.fault_eval import AnomalyEval
from cloud.sensor.scoring import auroc, detection_rate, false_alarm_rate, macro_f1
from cloud.verify import GateResult, fp16_gate, fp32_gate, int8_gate
from shared.golden import GOLDEN_FILE, golden_arrays, golden_bytes
from shared.integrity import sha256_file
from shared.manifest import Golden, Quantization, RejectedVariant, Target, TensorSpec, Variant, VariantMetrics
from shared.object_store import atomic_write
from shared.task_contract import AnomalyHeadSpec

log = logging.getLogger(__name__)

FILES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
ERRORS_OUTPUT = "channel_errors"
_ORDER = ("fp32", "fp16", "int8")
# Ops that stay in INT8 in an anomaly graph; with their Quantize/Dequantize pairs.
_INT8_OPS = frozenset({"Conv", "ConvTranspose", "QuantizeLinear", "DequantizeLinear"})


@dataclass
class SensorExport:
    """Variants that passed, rejected ones with reasons, golden samples, I/O specs and the figures behind them."""

    variants: list[Variant]
    rejected: list[RejectedVariant]
    golden: Golden | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: dict[str, float]
    head: AnomalyHeadSpec | None = None
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per variant tried: verdict and gate figures."""
        lines = [f"reference (torch): {_fmt(self.reference)}"]
        lines += [f"{v.precision}: pass  {_fmt(self.figures.get(v.precision, {}))}" for v in self.variants]
        lines += [f"{r.precision}: REJECTED  {r.reason}" for r in self.rejected]
        return "\n".join(lines)


def _fmt(figures: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in figures.items())


def torch_outputs(model: nn.Module, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    """The eval-mode torch model's outputs on CPU: the reference every variant is gated against."""
    model = model.eval().cpu()
    with torch.inference_mode():
        out = [model(torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch]))).numpy()
               for i in range(0, inputs.shape[0], batch)]
    return np.concatenate(out).astype(np.float32, copy=False)


def rename_output(path: Path, new: str) -> None:
    """Give the exported graph's one output its contract name (the exporter always writes 'logits')."""
    model = onnx.load(str(path))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    model.graph.output[0].name = new
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs, outputs = tensor_specs(path)
    return ([i.model_copy(update={"layout": "NCT"}) for i in inputs],
            [o.model_copy(update={"layout": "NC"}) for o in outputs])


def reduce_scores(errors: np.ndarray, reduce: str) -> np.ndarray:
    """Window scores from per-channel errors, as shared.tasks.anomaly's head reduces them."""
    e = np.asarray(errors, dtype=np.float64)
    return e.max(axis=1) if reduce == "max" else e.mean(axis=1)


@dataclass
class _Anomaly:
    """Figures of one model (torch or a variant) on the calibration and fault sets."""

    threshold: float
    auroc: float
    far: float
    errors: np.ndarray
    per_kind: dict[str, float]


def _anomaly_figures(val_errors: np.ndarray, eval_errors: np.ndarray, ev: AnomalyEval, cfg: AnomalyConfig,
                     reduce: str) -> _Anomaly:
    threshold = calibrate_threshold(reduce_scores(val_errors, reduce), cfg.threshold_percentile)
    scores = reduce_scores(eval_errors, reduce)
    per_kind = {f"detect_{k}": detection_rate(scores[ev.kind == k], threshold) for k in sorted(set(ev.kind) - {""})}
    return _Anomaly(threshold, auroc(scores, ev.is_anomaly), false_alarm_rate(scores[~ev.is_anomaly], threshold),
                    eval_errors, per_kind)


def convolutions_only(model: onnx.ModelProto) -> list[str]:
    """Every node but the convolutions: INT8 would round the anomaly features' exact repeats and small means away."""
    return [n.name for n in model.graph.node if n.op_type not in _INT8_OPS and n.name]


def _build(precision: str, fp32: Path, out_dir: Path, calib: np.ndarray, cfg: ExportConfig, cpu: CpuInfo,
           task: str) -> tuple[Path, Target, Quantization | None, str]:
    """The variant's file, its target and INT8 settings; ExportError when it cannot be built."""
    if precision == "fp32":
        return fp32, Target(device="cpu", cpu_features=cpu.recorded_features()), None, CPU
    if precision == "fp16":
        path = convert_fp16(fp32, out_dir / FILES["fp16"])
        return path, Target(device="cuda"), None, best_provider(prefer_cuda=True)
    plan = choose_int8_plan(cfg.int8_mode, cpu)
    path = out_dir / FILES["int8"]
    # An anomaly model's features beside the autoencoder stay in float and read the readings, not 256 levels of them.
    quant = quantize_int8(fp32, path, calib, plan, samples=cfg.calibration_samples, calibration=cfg.int8_calibration,
                          keep_float=convolutions_only if task == "anomaly" else None)
    return path, Target(device="cpu", cpu_features=cpu.recorded_features()), quant, CPU


def export_sensor(
    task: str, model: nn.Module, input_shape: tuple[int, int], labels: list[str], test_inputs: np.ndarray,
    test_labels: np.ndarray, val_inputs: np.ndarray, calib_inputs: np.ndarray, anomaly_eval: AnomalyEval | None,
    cfg: ExportConfig, anomaly_cfg: AnomalyConfig, out_dir: Path, reduce: str = "max",
) -> SensorExport:
    """Build the configured variants into out_dir; only files of variants that passed remain there."""
    if task == "anomaly" and anomaly_eval is None:
        raise ExportError("anomaly export needs the held-out windows with injected faults")
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / FILES["fp32"]
    cpu = detect_cpu()
    kept: list[Path] = []
    try:
        export_fp32(model, input_shape, fp32, cfg.opset, cfg.exporter)
        if task == "anomaly":
            rename_output(fp32, ERRORS_OUTPUT)
        inputs, outputs = _specs(fp32)
        gate_inputs = test_inputs if task == "sensor-classification" else anomaly_eval.inputs  # type: ignore[union-attr]
        reference = torch_outputs(model, gate_inputs)
        ref_val = torch_outputs(model, val_inputs) if task == "anomaly" else None
        result = SensorExport([], [], None, inputs, outputs, {})
        ref_anomaly: _Anomaly | None = None
        if task == "anomaly":
            assert anomaly_eval is not None and ref_val is not None
            ref_anomaly = _anomaly_figures(ref_val, reference, anomaly_eval, anomaly_cfg, reduce)
            result.reference = {"auroc": ref_anomaly.auroc, "false_alarm_rate": ref_anomaly.far,
                                "threshold": ref_anomaly.threshold, **ref_anomaly.per_kind}
            result.head = AnomalyHeadSpec(
                format="reconstruction_error", output=ERRORS_OUTPUT, reduce=reduce,  # type: ignore[arg-type]
                threshold=ref_anomaly.threshold, percentile=anomaly_cfg.threshold_percentile,
                calibration_windows=int(val_inputs.shape[0]),
            )
        else:
            pred = reference.argmax(axis=1)
            result.reference = {"accuracy": float((pred == test_labels).mean()),
                                "f1": macro_f1(pred, test_labels, len(labels))}
        for precision in [p for p in _ORDER if p in cfg.precisions]:
            path: Path | None = None
            try:
                path, target, quant, provider = _build(precision, fp32, out_dir, calib_inputs, cfg, cpu, task)
                session = open_session(path, 0, provider, spin=False)
                got = predict(session, gate_inputs)
                if task == "anomaly":
                    assert anomaly_eval is not None and ref_anomaly is not None
                    verdict, metrics, figures = _anomaly_gate(
                        precision, got, predict(session, val_inputs), reference, ref_anomaly, anomaly_eval,
                        anomaly_cfg, reduce)
                else:
                    verdict, metrics, figures = _classification_gate(precision, reference, got, test_labels,
                                                                     len(labels), cfg)
            except ExportError as exc:
                verdict, metrics, figures = f"build failed: {exc}", {}, {}
            result.figures[precision] = figures
            if verdict:
                log.warning("%s rejected: %s", precision, verdict)
                result.rejected.append(RejectedVariant(precision=precision, reason=verdict))  # type: ignore[arg-type]
                if path is not None and path != fp32:
                    path.unlink(missing_ok=True)
                continue
            assert path is not None
            threads = cfg.latency_threads
            latency = ort_latency(open_session(path, threads, provider), gate_inputs, cfg.latency_runs, threads)
            result.variants.append(Variant(
                file=path.name, precision=precision, sha256=sha256_file(path),  # type: ignore[arg-type]
                bytes=path.stat().st_size, target=target, quantization=quant,
                metrics=VariantMetrics(latency_ms_p50=latency.p50_ms, latency_ms_p99=latency.p99_ms, **metrics),
            ))
            kept.append(path)
        if fp32 not in kept:
            fp32.unlink(missing_ok=True)
        result.golden = _golden(task, out_dir, gate_inputs, reference, cfg.golden_samples, result.head, reduce)
    except BaseException:
        for name in [*FILES.values(), GOLDEN_FILE]:
            (out_dir / name).unlink(missing_ok=True)
        raise
    return result


def _classification_gate(precision: str, reference: np.ndarray, got: np.ndarray, labels: np.ndarray, classes: int,
                         cfg: ExportConfig) -> tuple[str, dict[str, float | None], dict[str, float]]:
    """The image classifier's gates (cloud.verify) on windows, with macro F1 recorded beside accuracy."""
    gate: GateResult
    if precision == "fp32":
        gate = fp32_gate(reference, got, labels, cfg.fp32_max_abs_diff)
    elif precision == "fp16":
        gate = fp16_gate(reference, got, labels, cfg.fp16_min_agreement)
    else:
        gate = int8_gate(reference, got, labels, cfg.int8_max_accuracy_drop)
    f1 = macro_f1(got.argmax(axis=1), labels, classes)
    metrics: dict[str, float | None] = {"accuracy": gate.accuracy, "f1": f1, "agreement": gate.agreement,
                                        "max_abs_diff": gate.max_abs_diff}
    figures = {"accuracy": gate.accuracy, "f1": f1, "agreement": gate.agreement}
    return ("" if gate.passed else gate.reason), metrics, figures


def _anomaly_gate(precision: str, got: np.ndarray, val_got: np.ndarray, reference: np.ndarray, ref: _Anomaly,
                  ev: AnomalyEval, cfg: AnomalyConfig, reduce: str
                  ) -> tuple[str, dict[str, float | None], dict[str, float]]:
    """AUROC and false alarms at this variant's own calibrated threshold; FP32 must also reproduce torch."""
    if got.shape != reference.shape or not np.all(np.isfinite(got)):
        return f"outputs are {got.shape} (torch {reference.shape}) or not finite", {}, {}
    mine = _anomaly_figures(val_got, got, ev, cfg, reduce)
    rel = float(np.max(np.abs(got.astype(np.float64) - reference) / np.maximum(np.abs(reference), 1e-6)))
    figures = {"auroc": mine.auroc, "false_alarm_rate": mine.far, "threshold": mine.threshold, "max_rel_diff": rel,
               **mine.per_kind}
    diff = float(np.max(np.abs(got - reference)))
    metrics: dict[str, float | None] = {"auroc": mine.auroc, "false_alarm_rate": mine.far,
                                        "threshold": mine.threshold, "max_abs_diff": diff}
    why = []
    if precision == "fp32" and rel > cfg.fp32_max_rel_diff:
        why.append(f"errors differ from torch by up to {rel:.2e} relative (limit {cfg.fp32_max_rel_diff:.1e})")
    if mine.auroc < cfg.min_auroc:
        why.append(f"AUROC {mine.auroc:.3f} is below the budget {cfg.min_auroc:.3f}")
    if ref.auroc - mine.auroc > cfg.max_auroc_drop + 1e-9:
        why.append(f"AUROC {mine.auroc:.3f} is {ref.auroc - mine.auroc:.3f} below torch's {ref.auroc:.3f} "
                   f"(limit {cfg.max_auroc_drop:.3f})")
    if mine.far > cfg.max_false_alarm_rate + 1e-12:
        why.append(f"{mine.far:.2%} of normal windows exceed its threshold {mine.threshold:.4g} "
                   f"(budget {cfg.max_false_alarm_rate:.2%})")
    return "; ".join(why), metrics, figures


def _golden(task: str, out_dir: Path, inputs: np.ndarray, reference: np.ndarray, count: int,
            head: AnomalyHeadSpec | None, reduce: str) -> Golden:
    """Classification: clearest windows per class. Anomaly: the clearest normal and clearest anomalous windows,
    labelled 1 where the reference scores above the threshold (shared.golden's form with errors as 'logits')."""
    if task != "anomaly" or head is None:
        idx = golden_indices(reference, count)
        return write_golden(out_dir / GOLDEN_FILE, inputs[idx], reference[idx])
    scores = reduce_scores(reference, reduce)
    order = np.argsort(scores, kind="stable")
    low, high = order[: (count + 1) // 2], order[::-1][: count // 2]
    idx = np.unique(np.concatenate([low, high]))
    flags = over_threshold(scores[idx], head.threshold).astype(np.int64)
    labels = flags if reference.shape[1] > 1 else np.zeros_like(flags)
    return write_golden_labelled(out_dir / GOLDEN_FILE, inputs[idx], reference[idx], labels)


def write_golden_labelled(path: Path, inputs: np.ndarray, outputs: np.ndarray, labels: np.ndarray) -> Golden:
    """golden.npz with explicit labels (anomaly: 1 = above the threshold), in the shared format."""
    try:
        golden = golden_arrays(inputs, outputs, labels)
    except ValueError as exc:
        raise ExportError(f"golden samples: {exc}") from exc
    atomic_write(path, golden_bytes(golden))
    return Golden(file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size, count=int(inputs.shape[0]))
