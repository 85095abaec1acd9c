"""`make bench-export`: every published variant of the default, reference and detector packages on the same inputs.

One table from one run: variant | bytes | top-1 (classifiers) or mAP@.5 and mAP@.5:.95 (the detector) | p50 / p99
ms at batch 1 with 1 and 2 intra-op threads | speedup over torch eager at the same thread count. Inputs are the
packages' own held-out test split, rebuilt offline from the training config recorded in each manifest (same seed,
same split; the detector's synthetic scenes through bench.bench_detect). Targets: reference model (3x224x224)
INT8 >= 1.5x faster than ORT FP32 at p50 with one thread; detector INT8 faster than FP32 at batch 1 and within
its mAP@.5:.95 budget of FP32.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.bench_detect import eager_detector, eager_outputs, held_out, map_of, session_outputs
from bench.machine import RESULTS, machine, machine_line, write_results
from cloud.config import DataConfig, TrainConfig
from cloud.datasets import prepare_data
from cloud.models import build_model
from cloud.preprocessing import normalize
from edge.package_fetch import fetch_version
from shared.manifest import Manifest, parse_latest
from shared.object_store import LocalStore
from shared.percentiles import nearest_rank
from shared.signing import load_public_key

THREADS = (1, 2)


@dataclass
class Row:
    """One variant of one package."""

    package: str
    variant: str
    bytes: int
    top1: float
    p50_ms: dict[int, float]
    p99_ms: dict[int, float]
    speedup_vs_eager: dict[int, float]
    map50: float | None = None
    map50_95: float | None = None
    map_budget: float | None = None  # a detector's largest allowed mAP@.5:.95 drop from FP32 (0-1 scale)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the agent's own definition: every figure is an observed latency."""
    return nearest_rank(sorted(values), q)


def time_batch1(fn: Any, inputs: np.ndarray, runs: int) -> tuple[float, float]:
    """p50/p99 ms of batch-1 calls over the first `runs` inputs (cycled), after a warm-up."""
    for i in range(min(10, len(inputs))):
        fn(inputs[i : i + 1])
    times = []
    for i in range(runs):
        x = inputs[i % len(inputs) : i % len(inputs) + 1]
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return percentile(times, 50), percentile(times, 99)


def test_split(manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split the package was gated on, rebuilt from its recorded config and seed."""
    cfg = DataConfig.model_validate(manifest.train.config["data"])
    data = prepare_data(cfg, manifest.train.seed)
    return normalize(data.test.pixels, manifest.preprocess), data.test.labels


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session as the agent builds it."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def eager_model(build: Path, name: str) -> torch.nn.Module | None:
    """The trained torch model saved beside the package by the trainer (not published)."""
    ckpt = build / name / "model.pt"
    if not ckpt.exists():
        return None
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(**blob["arch"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def bench_package(
    store: LocalStore, name: str, key: Path, build: Path, runs: int, tmp: Path
) -> tuple[list[Row], list[str]]:
    """Rows for every variant of the latest version of one package."""
    latest = parse_latest(store.get(f"models/{name}/latest.json"))
    (tmp / name).mkdir(parents=True, exist_ok=True)
    pkg = fetch_version(store, name, latest.version, tmp / name, [load_public_key(key)])
    manifest = pkg.manifest
    if manifest.task == "detection":
        return detector_rows(manifest, pkg.directory, build, runs)
    x, y = test_split(manifest)
    notes = [f"{name} v{manifest.version}: {len(y)} held-out test images, input {tuple(x.shape[1:])}"]
    eager = eager_model(build, name)
    eager_p50: dict[int, float] = {}
    rows: list[Row] = []
    if eager is None:
        notes.append(f"{name}: torch eager unavailable ({build / name / 'model.pt'} missing: train on this machine)")
    else:
        with torch.inference_mode():
            logits = np.concatenate([eager(torch.from_numpy(x[i : i + 256])).numpy() for i in range(0, len(x), 256)])
            p50, p99 = {}, {}
            for t in THREADS:
                torch.set_num_threads(t)
                p50[t], p99[t] = time_batch1(lambda b: eager(torch.from_numpy(b)), x, runs)
        eager_p50 = p50
        size = sum(p.numel() * p.element_size() for p in eager.parameters())
        rows.append(Row(name, "torch eager", size, float((logits.argmax(1) == y).mean()), p50, p99,
                        {t: 1.0 for t in THREADS}))
    for v in manifest.variants:
        if v.precision == "tensorrt":
            notes.append(f"{name}: {v.file} is a TensorRT engine for {v.target.gpu_name}; not run on this CPU")
            continue
        path = pkg.directory / v.file
        p50, p99 = {}, {}
        top1 = float("nan")
        for t in THREADS:
            sess = ort_session(path, t)
            iname = sess.get_inputs()[0].name
            if t == THREADS[0]:
                out = np.concatenate([sess.run(None, {iname: x[i : i + 256]})[0] for i in range(0, len(x), 256)])
                top1 = float((out.argmax(1) == y).mean())
            p50[t], p99[t] = time_batch1(lambda b, s=sess, n=iname: s.run(None, {n: b}), x, runs)
        speed = {t: eager_p50[t] / p50[t] for t in THREADS} if eager_p50 else {}
        rows.append(Row(name, f"ORT {v.precision}", v.bytes, top1, p50, p99, speed))
    return rows, notes


def detector_rows(manifest: Manifest, directory: Path, build: Path, runs: int) -> tuple[list[Row], list[str]]:
    """mAP on the held-out synthetic scenes and batch-1 latency of the torch detector and each ONNX variant."""
    name = manifest.name
    test, x = held_out(manifest)
    budget = TrainConfig.model_validate(manifest.train.config).detection.map_drop_budget
    notes = [f"{name} v{manifest.version}: detector, {len(test)} held-out synthetic scenes, input "
             f"{tuple(x.shape[1:])}; mAP by pycocotools through the manifest's task head; mAP@.5:.95 budget "
             f"{budget * 100:.1f} points of FP32"]
    rows: list[Row] = []
    eager = eager_detector(build, name)
    eager_p50: dict[int, float] = {}
    if eager is None:
        notes.append(f"{name}: torch eager unavailable ({build / name / 'model.pt'} missing: train on this machine)")
    else:
        run = eager_outputs(eager)
        scores = map_of(manifest, test, x, run)
        p50, p99 = {}, {}
        for t in THREADS:
            torch.set_num_threads(t)
            p50[t], p99[t] = time_batch1(run, x, runs)
        eager_p50 = p50
        size = sum(p.numel() * p.element_size() for p in eager.parameters())
        rows.append(Row(name, "torch eager", size, float("nan"), p50, p99, {t: 1.0 for t in THREADS},
                        scores.map50, scores.map50_95))
    for v in manifest.variants:
        if v.precision == "tensorrt":
            notes.append(f"{name}: {v.file} is a TensorRT engine for {v.target.gpu_name}; not run on this CPU")
            continue
        scores = map_of(manifest, test, x, session_outputs(ort_session(directory / v.file, 0)))
        p50, p99 = {}, {}
        for t in THREADS:
            p50[t], p99[t] = time_batch1(session_outputs(ort_session(directory / v.file, t)), x, runs)
        speed = {t: eager_p50[t] / p50[t] for t in THREADS} if eager_p50 else {}
        rows.append(Row(name, f"ORT {v.precision}", v.bytes, float("nan"), p50, p99, speed, scores.map50,
                        scores.map50_95, budget))
    return rows, notes


def verdict(rows: list[Row]) -> list[str]:
    """INT8 vs FP32 at one thread, per package; targets for the reference model and the detector (whose INT8
    must also stay within its mAP@.5:.95 budget of FP32)."""
    out = []
    for name in dict.fromkeys(r.package for r in rows):
        fp32 = next((r for r in rows if r.package == name and r.variant == "ORT fp32"), None)
        int8 = next((r for r in rows if r.package == name and r.variant == "ORT int8"), None)
        if fp32 is None or int8 is None:
            continue
        ratio = fp32.p50_ms[1] / int8.p50_ms[1]
        line = f"{name}: INT8 is {ratio:.2f}x the speed of ORT FP32 at p50, 1 thread"
        if name == "reference":
            line += f" (target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'})"
        elif fp32.map50_95 is not None and int8.map50_95 is not None and fp32.map_budget is not None:
            drop = (fp32.map50_95 - int8.map50_95) * 100
            budget = fp32.map_budget * 100
            line += (f" (target > 1x: {'met' if ratio > 1 else 'NOT met'}); mAP@.5:.95 drop {drop:.2f} points "
                     f"(budget {budget:.1f}: {'met' if drop <= budget + 1e-9 else 'NOT met'})")
        else:
            line += " (no target: on a model this small fixed per-call costs dominate)"
        out.append(line)
    return out


def render(rows: list[Row], notes: list[str], verdicts: list[str], runs: int, host: dict[str, Any]) -> str:
    """Markdown table."""
    head = ("| package | variant | bytes | top-1 | mAP@.5 | mAP@.5:.95 | p50 ms 1t | p99 ms 1t | p50 ms 2t | p99 ms 2t "
            "| speedup vs eager 1t | speedup vs eager 2t |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = []
    for r in rows:
        sp = [f"{r.speedup_vs_eager[t]:.2f}x" if t in r.speedup_vs_eager else "n/a" for t in THREADS]
        top1 = "" if r.map50 is not None else f"{r.top1:.4f}"
        maps = ["" if v is None else f"{v:.4f}" for v in (r.map50, r.map50_95)]
        lines.append(
            f"| {r.package} | {r.variant} | {r.bytes:,} | {top1} | {maps[0]} | {maps[1]} | {r.p50_ms[1]:.3f} "
            f"| {r.p99_ms[1]:.3f} | {r.p50_ms[2]:.3f} | {r.p99_ms[2]:.3f} | {sp[0]} | {sp[1]} |"
        )
    return "\n".join([
        f"# bench-export (batch 1, {runs} timed runs per cell, one run of the benchmark)", "", machine_line(host),
        "", head, *lines, "", *[f"- {n}" for n in notes], *[f"- {v}" for v in verdicts], "",
    ])


def main() -> None:
    """Benchmark the packages and write bench/results/export.{md,json}."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", "--key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"),
                    help="public key the packages must be signed with (--key: old spelling)")
    ap.add_argument("--build", type=Path, default=Path("build"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--packages", nargs="+", default=["digits", "reference", "shapes-digits"])
    ap.add_argument("--out", type=Path, default=RESULTS, help="Where export.md and export.json go.")
    args = ap.parse_args()
    store = LocalStore(args.store)
    rows: list[Row] = []
    notes: list[str] = []
    host = machine()
    with tempfile.TemporaryDirectory(prefix="edgeferry-bench-export-") as t:
        for name in args.packages:
            if not store.exists(f"models/{name}/latest.json"):
                notes.append(f"{name}: not published in {args.store}; skipped")
                continue
            r, n = bench_package(store, name, args.key, args.build, args.runs, Path(t))
            rows += r
            notes += n
    verdicts = verdict(rows)
    host["load_after"] = list(os.getloadavg())
    write_results("export", {"rows": [asdict(r) for r in rows], "notes": notes, "verdicts": verdicts,
                             "runs": args.runs, **host}, render(rows, notes, verdicts, args.runs, host), args.out)


if __name__ == "__main__":
    main()
