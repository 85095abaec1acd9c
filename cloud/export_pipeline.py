"""Export every variant, verify each against the torch model on the test split, keep only those that pass."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from cloud.config import ExportConfig
from cloud.cpu_features import CpuInfo, detect_cpu
from cloud.errors import ExportError
from cloud.export_onnx import convert_fp16, export_fp32, tensor_specs
from cloud.golden import golden_indices, write_golden
from cloud.latency import LatencyStats, call_latency, ort_latency
from cloud.ort_session import CPU, best_provider, open_session, predict
from cloud.quantize import choose_int8_plan, quantize_int8
from cloud.tensorrt_build import build_engine, engine_file_name
from cloud.verify import GateResult, accuracy, agreement_gate, fp16_gate, fp32_gate, int8_gate
from edge.backends.tensorrt_exec import TrtModel
from edge.backends.tensorrt_runtime import probe_tensorrt
from shared.errors import EdgeferryError
from shared.golden import GOLDEN_FILE
from shared.integrity import sha256_file
from shared.manifest import Golden, Quantization, RejectedVariant, Target, TensorSpec, Variant, VariantMetrics

log = logging.getLogger(__name__)

FILES = {"fp32": "model.fp32.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
_ORDER = ("fp32", "fp16", "int8")
_TORCH_BATCH = 256
# Test-split predictions may use every core; only the manifest latency is pinned to latency_threads.
_PREDICT_THREADS = 0


@dataclass
class ExportReport:
    """What export produced: published-to-be variants, rejected ones with reasons, golden samples, I/O specs."""

    variants: list[Variant]
    rejected: list[RejectedVariant]
    golden: Golden
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    torch_accuracy: float
    gates: list[GateResult] = field(default_factory=list)
    latency_threads: int = 1
    exporter: str = ""
    opset: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A table of every variant tried: gate verdict, figures, latency and size."""
        title = f"export: torch test accuracy {self.torch_accuracy:.4f} ({self.exporter} exporter, opset {self.opset})"
        table = Table(title=title)
        for col in ("variant", "file", "gate", "top-1", "agreement", "max |diff|", "p50 ms", "p99 ms", "bytes"):
            table.add_column(col, justify="left" if col in ("variant", "file", "gate") else "right")
        by_precision = {g.precision: g for g in self.gates}
        for v in self.variants:
            m = v.metrics
            table.add_row(
                v.precision, v.file, "pass", f"{m.accuracy:.4f}", _fmt(m.agreement, ".4f"), _fmt(m.max_abs_diff, ".1e"),
                f"{m.latency_ms_p50:.3f}", f"{m.latency_ms_p99:.3f}", f"{v.bytes:,}",
            )
        for r in self.rejected:
            g = by_precision.get(r.precision)
            table.add_row(
                r.precision, "-", "REJECTED", _fmt(g.accuracy if g else None, ".4f"),
                _fmt(g.agreement if g else None, ".4f"), _fmt(g.max_abs_diff if g else None, ".1e"), "-", "-", "-",
            )
        out = io.StringIO()
        console = Console(file=out, width=140, force_terminal=False, color_system=None)
        console.print(table)
        for r in self.rejected:
            console.print(f"rejected {r.precision}: {r.reason}", markup=False, soft_wrap=True)
        console.print(
            f"latency: batch 1, {self.latency_threads} intra-op thread(s); golden: {self.golden.count} samples"
        )
        for note in self.notes:
            console.print(note, markup=False, soft_wrap=True)
        return out.getvalue().rstrip()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def torch_logits(model: nn.Module, inputs: np.ndarray, batch: int = _TORCH_BATCH) -> np.ndarray:
    """The reference outputs: the eval-mode torch model on CPU."""
    model = model.eval().cpu()
    out = []
    with torch.inference_mode():
        for i in range(0, inputs.shape[0], batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch], dtype=np.float32))).numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def check_inputs(
    input_shape: tuple[int, ...],
    labels: list[str],
    test_inputs: np.ndarray,
    test_labels: np.ndarray,
    calib_inputs: np.ndarray,
    cfg: ExportConfig,
) -> None:
    """Refuse unusable arrays before anything is written."""
    if len(input_shape) != 3 or any(d <= 0 for d in input_shape):
        raise ExportError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    if test_inputs.ndim != 4 or tuple(test_inputs.shape[1:]) != tuple(input_shape) or test_inputs.shape[0] == 0:
        chw = ", ".join(map(str, input_shape))
        raise ExportError(f"test inputs have shape {test_inputs.shape}, expected (N>0, {chw})")
    if test_labels.shape != (test_inputs.shape[0],) or not np.issubdtype(test_labels.dtype, np.integer):
        n = test_inputs.shape[0]
        raise ExportError(f"test labels are {test_labels.dtype}{test_labels.shape}, expected {n} integers")
    if test_labels.min() < 0 or test_labels.max() >= len(labels):
        raise ExportError(f"test labels fall outside the {len(labels)} classes")
    if "int8" in cfg.precisions and (calib_inputs.ndim != 4 or tuple(calib_inputs.shape[1:]) != tuple(input_shape)
                                     or calib_inputs.shape[0] == 0):
        raise ExportError(f"INT8 calibration images have shape {calib_inputs.shape}, expected (M>0, *{input_shape})")


@dataclass
class _Run:
    """State shared by the variant builders of one export."""

    cfg: ExportConfig
    out_dir: Path
    reference: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    cpu: CpuInfo
    gates: list[GateResult] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    rejected: list[RejectedVariant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine_path: Path | None = None

    def reject(self, precision: str, reason: str, path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)
        log.warning("%s rejected: %s", precision, reason)
        self.rejected.append(RejectedVariant(precision=precision, reason=reason))  # type: ignore[arg-type]

    def gate_onnx(self, precision: str, path: Path, gate: Callable[[np.ndarray], GateResult], provider: str = CPU
                  ) -> GateResult:
        logits = predict(open_session(path, _PREDICT_THREADS, provider, spin=False), self.test_inputs)
        result = gate(logits)
        log.info("%s gate %s: %s", precision, "passed" if result.passed else "FAILED", result.reason)
        return result

    def accept(self, precision: str, path: Path, result: GateResult, target: Target, latency: LatencyStats,
               quantization: Quantization | None = None) -> None:
        self.variants.append(Variant(
            file=path.name,
            precision=precision,  # type: ignore[arg-type]
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            target=target,
            metrics=VariantMetrics(
                accuracy=result.accuracy,
                latency_ms_p50=latency.p50_ms,
                latency_ms_p99=latency.p99_ms,
                agreement=result.agreement,
                max_abs_diff=result.max_abs_diff,
            ),
            quantization=quantization,
        ))

    def onnx_latency(self, path: Path, provider: str = CPU) -> LatencyStats:
        threads = self.cfg.latency_threads
        return ort_latency(open_session(path, threads, provider), self.test_inputs, self.cfg.latency_runs, threads)

    def cpu_target(self) -> Target:
        return Target(device="cpu", cpu_features=self.cpu.recorded_features())


def _fp32(run: _Run, path: Path) -> None:
    # A rejected FP32 file stays until FP16/INT8 are derived from it; export_and_verify removes it after.
    try:
        result = run.gate_onnx("fp32", path, lambda lg: fp32_gate(run.reference, lg, run.test_labels,
                                                                  run.cfg.fp32_max_abs_diff))
        run.gates.append(result)
        if result.passed:
            run.accept("fp32", path, result, run.cpu_target(), run.onnx_latency(path))
        else:
            run.reject("fp32", result.reason, None)
    except ExportError as exc:
        run.reject("fp32", f"cannot be run: {exc}", None)


def _fp16(run: _Run, fp32_path: Path) -> None:
    path = run.out_dir / FILES["fp16"]
    try:
        convert_fp16(fp32_path, path)
        provider = best_provider(prefer_cuda=True)
        if provider == CPU:
            run.notes.append("fp16 verified and timed on CPU ONNX Runtime, which runs FP16 nodes in float32 "
                             "(weights rounded to FP16); GPU FP16 arithmetic was not exercised")
        result = run.gate_onnx("fp16", path, lambda lg: fp16_gate(run.reference, lg, run.test_labels,
                                                                  run.cfg.fp16_min_agreement), provider)
        run.gates.append(result)
        if not result.passed:
            run.reject("fp16", result.reason, path)
            return
        run.accept("fp16", path, result, Target(device="cuda"), run.onnx_latency(path, provider))
    except ExportError as exc:
        run.reject("fp16", f"build failed: {exc}", path)


def _int8(run: _Run, fp32_path: Path, calib_inputs: np.ndarray) -> None:
    path = run.out_dir / FILES["int8"]
    plan = choose_int8_plan(run.cfg.int8_mode, run.cpu)
    attempts = {"auto": [False, True], "always": [True], "never": [False]}[run.cfg.int8_float_head]
    try:
        for i, float_head in enumerate(attempts):
            quant = quantize_int8(fp32_path, path, calib_inputs, plan, samples=run.cfg.calibration_samples,
                                  calibration=run.cfg.int8_calibration, float_head=float_head)
            result = run.gate_onnx("int8", path, lambda lg: int8_gate(run.reference, lg, run.test_labels,
                                                                      run.cfg.int8_max_accuracy_drop))
            if result.passed or i == len(attempts) - 1:
                break
            log.info("int8 with every layer quantized failed its gate; retrying with the classifier in float")
        run.gates.append(result)
        if not result.passed:
            run.reject("int8", result.reason, path)
            return
        run.accept("int8", path, result, run.cpu_target(), run.onnx_latency(path), quant)
    except ExportError as exc:
        run.reject("int8", f"build failed: {exc}", path)


def _tensorrt(run: _Run, fp32_path: Path) -> None:
    """Build, gate and time an engine with the device's own TensorRT probe, builder and runner (edge.backends)."""
    mode = run.cfg.tensorrt
    if mode == "off":
        return
    runtime, why = probe_tensorrt()
    if runtime is None:
        if mode == "required":
            raise ExportError(f"tensorrt: required, but {why}")
        log.info("no TensorRT engine built: %s", why)
        run.notes.append(f"tensorrt: skipped ({why})")
        return
    path = run.engine_path = run.out_dir / engine_file_name(runtime.gpu_name)
    try:
        info = build_engine(fp32_path, path, runtime, fp16=run.cfg.tensorrt_fp16,
                            workspace=run.cfg.tensorrt_workspace_mb << 20, max_batch=run.cfg.tensorrt_max_batch)
        model = TrtModel(runtime, path.read_bytes(), path.name)
        try:
            result = agreement_gate("tensorrt", run.reference, model.run(run.test_inputs), run.test_labels,
                                    run.cfg.fp16_min_agreement)
            run.gates.append(result)
            if not result.passed:
                run.reject("tensorrt", result.reason, path)
                return
            # Batch 1 including the host-device copies, as the agent pays them per frame.
            sample = np.ascontiguousarray(run.test_inputs[:1], dtype=np.float32)
            latency = call_latency(lambda: model.run(sample), run.cfg.latency_runs, threads=1)
        finally:
            model.close()
        run.accept("tensorrt", path, result, info.to_target(), latency)
    except (EdgeferryError, OSError) as exc:  # ExportError, or edge's BackendError from the shared runner
        if mode == "required":
            path.unlink(missing_ok=True)
            if isinstance(exc, ExportError):
                raise
            raise ExportError(f"tensorrt: {exc}") from exc
        run.reject("tensorrt", f"build failed: {exc}", path)


def export_and_verify(
    model: nn.Module,
    input_shape: tuple[int, ...],
    labels: list[str],
    test_inputs: np.ndarray,
    test_labels: np.ndarray,
    calib_inputs: np.ndarray,
    cfg: ExportConfig,
    out_dir: Path,
) -> ExportReport:
    """Build the configured variants into out_dir; only files of variants that passed their gate remain there."""
    check_inputs(input_shape, labels, test_inputs, test_labels, calib_inputs, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = torch_logits(model, test_inputs)
    if reference.shape != (test_inputs.shape[0], len(labels)):
        raise ExportError(f"the model outputs {reference.shape[1:]} values per sample for {len(labels)} labels")
    torch_acc = accuracy(reference, test_labels)
    run = _Run(cfg, out_dir, reference, test_inputs, test_labels, detect_cpu())
    fp32_path = out_dir / FILES["fp32"]
    try:
        exported = export_fp32(model, input_shape, fp32_path, cfg.opset, cfg.exporter)
        inputs, outputs = tensor_specs(fp32_path)
        wanted = [p for p in _ORDER if p in cfg.precisions]
        if "fp32" in wanted:
            _fp32(run, fp32_path)
        # Derived variants are gated on torch's outputs, so they stand on their own even if FP32 was rejected.
        if "fp16" in wanted:
            _fp16(run, fp32_path)
        if "int8" in wanted:
            _int8(run, fp32_path, calib_inputs)
        _tensorrt(run, fp32_path)
        if not any(v.file == fp32_path.name for v in run.variants):
            fp32_path.unlink()
        idx = golden_indices(reference, cfg.golden_samples)
        golden = write_golden(out_dir / GOLDEN_FILE, test_inputs[idx], reference[idx])
    except BaseException:
        leftovers = [*(out_dir / name for name in FILES.values()), out_dir / GOLDEN_FILE, run.engine_path]
        for path in leftovers:
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return ExportReport(
        variants=run.variants,
        rejected=run.rejected,
        golden=golden,
        inputs=inputs,
        outputs=outputs,
        torch_accuracy=torch_acc,
        gates=run.gates,
        latency_threads=cfg.latency_threads,
        exporter=exported.exporter,
        opset=exported.opset,
        notes=run.notes,
    )

