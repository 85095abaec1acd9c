"""The detector `make train-detect` published, measured against issue 15's targets on this machine.

Per variant, from the signed package: mAP@.5 and mAP@.5:.95 on the held-out synthetic test split (rebuilt from the
manifest's own config and seed, decoded by the manifest's task head, scored by pycocotools), and batch-1 latency
p50/p99 through ONNX Runtime at 1 and 2 intra-op threads. Targets: FP32 mAP@.5 >= 0.90 after <= 300 s of training
on 2 cores, INT8 within the mAP@.5:.95 budget of FP32, INT8 faster than FP32 at batch 1.

    python -m bench.bench_detect [--store .store] [--key .keys/edgeferry.pub] [--name shapes-digits]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cloud.config import TrainConfig
from cloud.detection.coco_eval import coco_map
from cloud.detection.data import scene_spec
from cloud.detection.synthetic import generate_split
from cloud.preprocessing import normalize
from cloud.publish import verify_published
from edge.runtime_bench import cpu_model_name
from shared.manifest import Manifest, version_prefix
from shared.object_store import LocalStore
from shared.percentiles import percentiles
from shared.signing import load_public_key
from shared.tasks import head_for

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")
THREADS = (1, 2)
RUNS = 300
TARGET_MAP50 = 0.90
TARGET_TRAIN_S = 300.0


def cpu_flags() -> list[str]:
    """The instruction-set flags of note that /proc/cpuinfo lists (what lscpu prints as Flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    have = set(line.partition(":")[2].split())
    return [f for f in FLAGS if f in have]


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _latency(session: ort.InferenceSession, x: np.ndarray) -> tuple[float, float]:
    feed = {"input": np.ascontiguousarray(x[:1])}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    p = percentiles(times, (50, 99))
    return p[50], p[99]


def variant_rows(store: LocalStore, m: Manifest, tmp: Path) -> list[dict[str, Any]]:
    """mAP and batch-1 latency of each published variant on the rebuilt held-out split."""
    cfg = TrainConfig.model_validate(m.train.config)
    test = generate_split("test", cfg.detection.test_scenes, cfg.trainer.seed, scene_spec(cfg.detection))
    x = normalize(test.images, m.preprocess)
    head = head_for(m)
    rows = []
    for v in m.variants:
        path = tmp / v.file
        store.download(version_prefix(m.name, m.version) + v.file, path)
        session = _session(path, 0)
        outs = [session.run(None, {"input": x[i : i + 64]}) for i in range(0, len(x), 64)]
        decoded = {name: np.concatenate([o[k] for o in outs]) for k, name in enumerate(["boxes", "scores",
                                                                                         "class_ids"])}
        cands = head.candidates(decoded)  # type: ignore[attr-defined]
        scores = coco_map(test.boxes, test.classes, np.stack([c[0] for c in cands]),
                          np.stack([c[1] for c in cands]), np.stack([c[2] for c in cands]), len(m.labels))
        row: dict[str, Any] = {"variant": v.precision, "bytes": v.bytes, "map50": scores.map50,
                               "map50_95": scores.map50_95, "manifest_map50_95": v.metrics.map50_95}
        for t in THREADS:
            row[f"p50_ms_{t}t"], row[f"p99_ms_{t}t"] = _latency(_session(path, t), x)
        rows.append(row)
    return rows


def manifest_rows(m: Manifest) -> list[dict[str, Any]]:
    """The figures recorded at build (held-out mAP, batch-1 latency at the export's thread count) without re-running."""
    nan = float("nan")
    return [{"variant": v.precision, "bytes": v.bytes, "map50": v.metrics.map50, "map50_95": v.metrics.map50_95,
             "manifest_map50_95": v.metrics.map50_95, "p50_ms_1t": v.metrics.latency_ms_p50,
             "p99_ms_1t": v.metrics.latency_ms_p99, "p50_ms_2t": nan, "p99_ms_2t": nan} for v in m.variants]


def render(doc: dict[str, Any]) -> str:
    """Markdown: machine, training, per-variant table, targets."""
    rows = {r["variant"]: r for r in doc["rows"]}
    out = [
        f"# Detector (`make train-detect`): {doc['name']} v{doc['version']}", "",
        f"CPU: {doc['cpu']}; flags: {', '.join(doc['flags']) or 'none of note'}; {doc['cores']} cores visible. "
        f"Training: {doc['train_seconds']:.0f} s fit + {doc['data_seconds']:.0f} s scene generation, "
        f"{doc['epochs']:.0f} epochs.", "",
        "| variant | bytes | mAP@.5 | mAP@.5:.95 | p50 ms 1t | p99 ms 1t | p50 ms 2t | p99 ms 2t |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        out.append(f"| {r['variant']} | {r['bytes']:,} | {r['map50']:.4f} | {r['map50_95']:.4f} | "
                   f"{r['p50_ms_1t']:.3f} | {r['p99_ms_1t']:.3f} | {r['p50_ms_2t']:.3f} | {r['p99_ms_2t']:.3f} |")
    for rej in doc["rejected"]:
        out.append(f"| {rej['precision']} | rejected: {rej['reason']} | | | | | | |")
    out += ["", "Targets (issue 15 §2):", ""]
    fp32, int8 = rows.get("fp32"), rows.get("int8")
    if fp32 is not None:
        out.append(f"- FP32 mAP@.5 >= {TARGET_MAP50}: {fp32['map50']:.4f} "
                   f"({'met' if fp32['map50'] >= TARGET_MAP50 else 'NOT met'})")
    out.append(f"- training <= {TARGET_TRAIN_S:.0f} s: {doc['train_seconds']:.0f} s "
               f"({'met' if doc['train_seconds'] <= TARGET_TRAIN_S else 'NOT met'}; see the load note)")
    if fp32 is not None and int8 is not None:
        drop = (fp32["map50_95"] - int8["map50_95"]) * 100
        ratio = fp32["p50_ms_1t"] / int8["p50_ms_1t"]
        out.append(f"- INT8 mAP@.5:.95 drop from FP32 within {doc['budget'] * 100:.1f} points: {drop:.2f} points "
                   f"({'met' if drop <= doc['budget'] * 100 + 1e-9 else 'NOT met'})")
        out.append(f"- INT8 faster than FP32 at batch 1, 1 thread: {ratio:.2f}x ({'met' if ratio > 1 else 'NOT met'})")
    elif int8 is None:
        out.append("- INT8: not published (see the rejected row)")
    out += [f"- {line}" for line in doc["notes"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure the published detector and write bench/results/detect.{md,json}."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_detect", description=main.__doc__)
    parser.add_argument("--store", default=".store")
    parser.add_argument("--key", type=Path, default=Path(".keys/edgeferry.pub"))
    parser.add_argument("--name", default="shapes-digits")
    parser.add_argument("--note", action="append", default=[], help="a line added under the targets")
    parser.add_argument("--from-manifest", action="store_true",
                        help="report the figures the trainer recorded (1 thread latency) instead of re-measuring")
    args = parser.parse_args(argv)
    store = LocalStore(args.store)
    m = verify_published(store, args.name, None, [load_public_key(args.key)])
    cfg = TrainConfig.model_validate(m.train.config)
    doc: dict[str, Any] = {
        "name": m.name, "version": m.version, "cpu": cpu_model_name() or "unknown CPU", "flags": cpu_flags(),
        "cores": len(os.sched_getaffinity(0)), "train_seconds": m.train.metrics.get("train_seconds", float("nan")),
        "data_seconds": m.train.metrics.get("data_seconds", float("nan")),
        "epochs": m.train.metrics.get("epochs", float("nan")), "budget": cfg.detection.map_drop_budget,
        "rejected": [r.model_dump() for r in m.rejected], "notes": args.note,
    }
    if args.from_manifest:
        doc["rows"] = manifest_rows(m)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
            doc["rows"] = variant_rows(store, m, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detect.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = render(doc)
    (RESULTS / "detect.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
