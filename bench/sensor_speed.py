"""Windows/s and latency per window of a sensor package on each runtime and variant: the bare runtime's own API on
normalized windows against the device's path on the same windows (recipe normalization of the raw readings, the
agent's backend, the task head and, for anomaly models, the k-of-n alert rule), in alternating blocks of one run so
their ratio holds under whatever load the machine had then. One thread, batch 1, as a device scores a stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge.backends.base import LoadedModel
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.config import OnnxRuntimeConfig, OpenVINOConfig
from edge.errors import AgentError
from edge.hardware import detect_hardware
from edge.sensor.alerts import AlertTracker, alert_threshold
from edge.sensor.config import AlertConfig
from edge.sensor.window_prep import WindowPreprocessor
from shared.manifest import Manifest, Variant
from shared.percentiles import nearest_rank
from shared.task_contract import AnomalyHeadSpec
from shared.tasks.base import head_for
from shared.windowing import normalize_window

BLOCK = 50
WARMUP = 20


@dataclass
class SpeedRow:
    """Bare and device-path figures of one runtime and variant; `note` says why a pair is missing."""

    runtime: str
    variant: str
    windows: int = 0
    bare_p50_ms: float = float("nan")
    bare_p99_ms: float = float("nan")
    bare_wps: float = float("nan")
    e2e_p50_ms: float = float("nan")
    e2e_p99_ms: float = float("nan")
    e2e_wps: float = float("nan")
    note: str = ""

    @property
    def ratio(self) -> float:
        """Device path p50 over bare p50."""
        return self.e2e_p50_ms / self.bare_p50_ms


def _bare_ort(path: Path) -> Callable[[np.ndarray], Any]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def _bare_openvino(path: Path, shape: tuple[int, ...]) -> Callable[[np.ndarray], Any]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def _device_path(model: LoadedModel, manifest: Manifest, variant: Variant) -> Callable[[np.ndarray], Any]:
    """Raw [T, C] window to the head's verdict (and the alert rule's step), as the agent handles one window."""
    assert manifest.window is not None
    prep = WindowPreprocessor(manifest.window)
    head = head_for(manifest)
    tracker: AlertTracker | None = None
    if isinstance(manifest.head, AnomalyHeadSpec):
        cfg = AlertConfig()
        threshold = alert_threshold(cfg, variant.metrics.threshold, manifest.head.threshold)
        tracker = AlertTracker(cfg, "bench", [c.name for c in manifest.window.channels], threshold)
    count = [0]

    def step(raw: np.ndarray) -> Any:
        results = head.decode([model.run(prep(raw))])
        count[0] += 1
        if tracker is not None:
            tracker.update(results[0], count[0], count[0] * 0.5)
        return results

    return step


def _time(fn: Callable[[np.ndarray], Any], inputs: np.ndarray, out: list[float]) -> None:
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - start)


def measure(bare: Callable[[np.ndarray], Any], device: Callable[[np.ndarray], Any], raw: np.ndarray,
            normalized: np.ndarray, rounds: int) -> tuple[list[float], list[float]]:
    """Per-window seconds of each path over `rounds` passes of the windows, in alternating blocks."""
    for i in range(min(WARMUP, len(raw))):
        bare(normalized[i])
        device(raw[i])
    bare_t: list[float] = []
    dev_t: list[float] = []
    for _ in range(rounds):
        for s in range(0, len(raw), BLOCK):
            _time(bare, normalized[s : s + BLOCK], bare_t)
            _time(device, raw[s : s + BLOCK], dev_t)
    return bare_t, dev_t


def _figures(row: SpeedRow, bare_t: list[float], dev_t: list[float]) -> SpeedRow:
    b, d = sorted(bare_t), sorted(dev_t)
    row.windows = len(b)
    row.bare_p50_ms, row.bare_p99_ms = 1000 * nearest_rank(b, 50), 1000 * nearest_rank(b, 99)
    row.e2e_p50_ms, row.e2e_p99_ms = 1000 * nearest_rank(d, 50), 1000 * nearest_rank(d, 99)
    row.bare_wps, row.e2e_wps = len(b) / sum(b), len(d) / sum(d)
    return row


def speed_rows(manifest: Manifest, files: dict[str, Path], raw: np.ndarray, rounds: int, cache: Path
               ) -> list[SpeedRow]:
    """Every runtime x variant of the package on the raw windows [N, T, C] (the agent's backends, one thread)."""
    assert manifest.window is not None
    recipe = manifest.window
    normalized = np.stack([normalize_window(w, recipe)[None] for w in raw]).astype(np.float32)
    shape = (1, recipe.num_channels, recipe.window)
    ort_backend = OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1))
    ov_backend = OpenVINOBackend(OpenVINOConfig(threads=1, cache_dir=cache))
    hw = detect_hardware()
    rows = []
    for v in manifest.variants:
        path = files[v.file]
        for runtime, backend in (("onnxruntime", ort_backend), ("openvino", ov_backend)):
            row = SpeedRow(runtime, v.precision)
            if not backend.can_run(v, hw):
                row.note = "the agent does not run this variant on this CPU (its backend refuses it); timed anyway"
            try:
                model = backend.load(path, v, manifest)
                bare = _bare_ort(path) if runtime == "onnxruntime" else _bare_openvino(path, shape)
            except (AgentError, ImportError, RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
                row.note = f"not runnable: {str(exc).splitlines()[0][:160]}"
                rows.append(row)
                continue
            try:
                rows.append(_figures(row, *measure(bare, _device_path(model, manifest, v), raw, normalized, rounds)))
            finally:
                model.close()
    return rows


def render_speed(rows: list[SpeedRow]) -> list[str]:
    """The Markdown table of one package's rows."""
    out = ["| runtime | variant | windows | bare p50 ms | bare p99 ms | bare windows/s | device p50 ms | device p99 ms "
           "| device windows/s | device/bare p50 | note |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if not r.windows:
            out.append(f"| {r.runtime} | {r.variant} | - | - | - | - | - | - | - | - | {r.note} |")
            continue
        out.append(f"| {r.runtime} | {r.variant} | {r.windows} | {r.bare_p50_ms:.3f} | {r.bare_p99_ms:.3f} | "
                   f"{r.bare_wps:,.0f} | {r.e2e_p50_ms:.3f} | {r.e2e_p99_ms:.3f} | {r.e2e_wps:,.0f} | "
                   f"{r.ratio:.2f}x | {r.note} |")
    return out
