"""Sensor models' figures on held-out data: accuracy/F1 of the window classifier, and AUROC, detection per fault
kind and false alarms per hour of the anomaly model (per window, and k of n windows as a device alerts), per
published variant, re-run here through ONNX Runtime from the signed packages `make train-sensor` published; and
windows/s and latency per window of each runtime and variant, bare against the device's path (bench.sensor_speed).

    python -m bench.bench_sensor [--store .store] [--key .keys/edgeferry.pub] [--rounds 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.machine import machine, machine_line, write_results
from bench.sensor_speed import SpeedRow, render_speed, speed_rows
from cloud.publish import verify_published
from cloud.sensor.config import SensorTrainConfig
from cloud.sensor.export import reduce_scores
from cloud.sensor.fault_eval import anomaly_eval_set
from cloud.sensor.recordings import Recording
from cloud.sensor.scoring import auroc, detection_rate, false_alarm_rate, macro_f1
from cloud.sensor.splits import cut, split_recordings
from cloud.sensor.train import load_sensor_data
from shared.manifest import Manifest, version_prefix
from shared.object_store import LocalStore
from shared.signing import load_public_key
from shared.task_contract import AnomalyHeadSpec
from shared.window_recipe import WindowRecipe
from shared.windowing import window_starts, windows_of

K_OF_N = (3, 5)
# The AUROC this model is meant to reach on its held-out recordings with injected faults (issue 18, helper brief).
AUROC_TARGET = 0.95


def k_of_n_alerts(over: np.ndarray, k: int, n: int) -> int:
    """Alerts a device raises on one stream: one each time k of the last n windows newly exceed the threshold."""
    alerts, active = 0, False
    for i in range(len(over)):
        firing = int(over[max(0, i - n + 1) : i + 1].sum()) >= k
        alerts += int(firing and not active)
        active = firing
    return alerts


def _file(store: LocalStore, m: Manifest, file: str, tmp: Path) -> Path:
    path = tmp / f"{m.name}-{m.version}-{file}"
    if not path.exists():
        store.download(version_prefix(m.name, m.version) + file, path)
    return path


def raw_windows(recordings: list[Recording], recipe: WindowRecipe) -> np.ndarray:
    """Every window [N, T, C] of the recordings in raw units, as a device's source hands them over."""
    return np.stack([r.values[s : s + recipe.window] for r in recordings
                     for s in window_starts(r.length, recipe.window, recipe.hop)])


def speed(store: LocalStore, m: Manifest, tmp: Path, rounds: int) -> list[dict[str, Any]]:
    """Runtime x variant rows of a package on its held-out recordings' windows, bare against the device's path."""
    cfg = SensorTrainConfig.model_validate(m.train.config)
    splits = split_recordings(load_sensor_data(cfg), cfg.data, cfg.trainer.seed)
    assert m.window is not None
    files = {v.file: _file(store, m, v.file, tmp) for v in m.variants}
    rows = speed_rows(m, files, raw_windows(splits.test, m.window), rounds, tmp / "openvino-cache")
    return [{**r.__dict__, "ratio": r.ratio if r.windows else None} for r in rows]


def _session(store: LocalStore, m: Manifest, file: str, tmp: Path) -> ort.InferenceSession:
    path = _file(store, m, file, tmp)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(None, {"input": x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def classification_rows(store: LocalStore, m: Manifest, tmp: Path) -> list[dict[str, Any]]:
    """Accuracy and macro F1 of each variant on the held-out windows."""
    cfg = SensorTrainConfig.model_validate(m.train.config)
    splits = split_recordings(load_sensor_data(cfg), cfg.data, cfg.trainer.seed)
    assert m.window is not None
    test = cut(splits.test, m.window, m.labels).labelled()
    rows = []
    for v in m.variants:
        pred = _run(_session(store, m, v.file, tmp), test.inputs).argmax(axis=1)
        rows.append({"variant": v.precision, "bytes": v.bytes, "accuracy": float((pred == test.labels).mean()),
                     "f1": macro_f1(pred, test.labels, len(m.labels)), "windows": len(test),
                     "p50_ms": v.metrics.latency_ms_p50})
    return rows


def _kind_auroc(normal: np.ndarray, faulty: np.ndarray) -> float:
    """AUROC of one fault kind's windows against the clean ones."""
    return auroc(np.concatenate([normal, faulty]), np.arange(normal.size + faulty.size) >= normal.size)


def anomaly_rows(store: LocalStore, m: Manifest, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """AUROC, detection per fault kind and false alarms per hour of each variant on the held-out fault set."""
    cfg = SensorTrainConfig.model_validate(m.train.config)
    splits = split_recordings(load_sensor_data(cfg), cfg.data, cfg.trainer.seed)
    recipe, head = m.window, m.head
    assert recipe is not None and isinstance(head, AnomalyHeadSpec)
    ev = anomaly_eval_set(splits.test, recipe, list(cfg.anomaly.faults), cfg.anomaly.fault_seed)
    streams = [windows_of(r.values, recipe) for r in splits.test]
    hours = sum(r.length for r in splits.test) / recipe.sample_rate_hz / 3600.0
    rows = []
    for v in m.variants:
        session = _session(store, m, v.file, tmp)
        threshold = v.metrics.threshold if v.metrics.threshold is not None else head.threshold
        scores = reduce_scores(_run(session, ev.inputs), head.reduce)
        normal = scores[~ev.is_anomaly]
        far = false_alarm_rate(normal, threshold)
        # No alarm in N clean windows still allows a rate up to about 3/N (95%, the rule of three).
        far_bound = 3.0 / normal.size if far == 0 else None
        alerts = sum(k_of_n_alerts(reduce_scores(_run(session, s), head.reduce) > threshold, *K_OF_N)
                     for s in streams if len(s))
        rows.append({
            "variant": v.precision, "bytes": v.bytes, "auroc": auroc(scores, ev.is_anomaly), "threshold": threshold,
            "false_alarm_rate": far, "false_alarms_per_hour": far * recipe.windows_per_hour,
            "k_of_n_alerts_per_hour": alerts / hours, "p50_ms": v.metrics.latency_ms_p50,
            "false_alarms_per_hour_bound": far_bound * recipe.windows_per_hour if far_bound is not None else None,
            **{f"detect_{k}": detection_rate(scores[ev.kind == k], threshold) for k in sorted(set(ev.kind) - {""})},
            **{f"auroc_{k}": _kind_auroc(normal, scores[ev.kind == k]) for k in sorted(set(ev.kind) - {""})},
        })
    info = {"normal_windows": int((~ev.is_anomaly).sum()), "faulty_windows": int(ev.is_anomaly.sum()),
            "clean_hours": hours, "windows_per_hour": recipe.windows_per_hour, "percentile": head.percentile,
            "calibration_windows": head.calibration_windows, "reduce": head.reduce}
    return rows, info


def _speed_section(title: str, rows: list[dict[str, Any]]) -> list[str]:
    return ["", f"### {title}: windows/s and latency per window, bare runtime against the device's path", "",
            *render_speed([SpeedRow(**{k: v for k, v in r.items() if k != "ratio"}) for r in rows])]


def render(doc: dict[str, Any]) -> str:
    """bench/results/sensor.md."""
    out = ["# Sensor models (make train-sensor, then python -m bench.bench_sensor)", "",
           machine_line(doc) + " (the machine is shared with other work while measured). Data: UEA BasicMotions "
           "(sktime's bundled copy): 6 channels at 10 Hz; held out: the set's 40 TEST recordings (10 s each); "
           "windows of 3 s every 0.5 s.", ""]
    c = doc["classification"]
    out += [f"## Window classifier `{c['name']}` v{c['version']} (trained in {c['train_seconds']:.0f} s)", "",
            "| variant | bytes | accuracy | macro F1 | windows | p50 ms (1 thread) |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {r['variant']} | {r['bytes']:,} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['windows']} | "
            f"{r['p50_ms']:.3f} |" for r in c["rows"]]
    a = doc["anomaly"]
    i = a["info"]
    kinds = [k.removeprefix("detect_") for k in a["rows"][0] if k.startswith("detect_")] if a["rows"] else []
    best = max((r["auroc"] for r in a["rows"]), default=float("nan"))
    verdict = "met" if best >= AUROC_TARGET else "NOT met"
    out += ["", f"## Anomaly model `{a['name']}` v{a['version']} (trained in {a['train_seconds']:.0f} s)", "",
            f"Target: AUROC >= {AUROC_TARGET} on the held-out recordings with injected faults: {verdict} "
            f"(best variant {best:.3f}).", "",
            f"Score: the {i['reduce']} over channels of each channel's largest scaled feature (cloud/sensor/"
            f"channel_scores.py). Threshold: {i['percentile']}th percentile of {i['calibration_windows']} held-out "
            f"normal windows, each variant calibrated on its own outputs. Test: {i['normal_windows']} clean windows "
            f"and {i['faulty_windows']} windows touching an injected fault (one of each kind per recording, seeded). "
            f"{i['windows_per_hour']:.0f} windows per hour of stream; the clean test data is "
            f"{i['clean_hours'] * 3600:.0f} s, so per-hour figures are extrapolated from few alarms (none: the 95% "
            "upper bound of the rule of three is given).", "",
            "| variant | AUROC | threshold | false alarms/window | false alarms/h per stream (95% bound) | "
            "alerts/h (3 of 5) | " + " | ".join(f"{k} detected (AUROC)" for k in kinds) + " |",
            "|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds)]
    for r in a["rows"]:
        bound = r.get("false_alarms_per_hour_bound")
        per_hour = f"{r['false_alarms_per_hour']:.0f}" + (f" (< {bound:.0f})" if bound is not None else "")
        out.append(f"| {r['variant']} | {r['auroc']:.3f} | {r['threshold']:.4g} | {r['false_alarm_rate']:.4f} | "
                   f"{per_hour} | {r['k_of_n_alerts_per_hour']:.0f} | "
                   + " | ".join(f"{r['detect_' + k]:.2f} ({r['auroc_' + k]:.3f})" for k in kinds) + " |")
    out += ["", "Fault columns: share of the windows touching that fault that score above the threshold, and the "
            "AUROC of those windows against the clean ones."]
    speed = doc.get("speed", {})
    if speed:
        out += ["", "## Speed per runtime and variant (one thread, batch 1)", "",
                f"Every window of the 40 held-out recordings, {doc.get('rounds', 1)} passes; bare: the runtime's own "
                "API on windows already normalized; device: the agent's path on the raw readings (recipe "
                "normalization, the agent's backend object, the task head, and the 3-of-5 alert rule for the anomaly "
                "model). The two alternate in blocks of 50 windows, so their ratio shares the machine's load."]
        for name, rows in speed.items():
            out += _speed_section(name, rows)
    out += ["", *[f"- {line}" for line in doc["notes"]]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure both sensor packages and write bench/results/sensor.{md,json}."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sensor", description=main.__doc__)
    parser.add_argument("--store", default=".store")
    parser.add_argument("--key", type=Path, default=Path(".keys/edgeferry.pub"))
    parser.add_argument("--classifier", default="motions")
    parser.add_argument("--anomaly", default="motions-anomaly")
    parser.add_argument("--rounds", type=int, default=4, help="passes over the held-out windows per speed row")
    parser.add_argument("--note", action="append", default=[], help="a line added under the tables")
    args = parser.parse_args(argv)
    store = LocalStore(args.store)
    trusted = [load_public_key(args.key)]
    doc: dict[str, Any] = {**machine(), "notes": args.note, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        cm = verify_published(store, args.classifier, None, trusted)
        doc["classification"] = {"name": cm.name, "version": cm.version,
                                 "rows": classification_rows(store, cm, Path(tmp)),
                                 "train_seconds": cm.train.metrics.get("train_seconds", float("nan"))}
        am = verify_published(store, args.anomaly, None, trusted)
        rows, info = anomaly_rows(store, am, Path(tmp))
        doc["anomaly"] = {"name": am.name, "version": am.version, "rows": rows, "info": info,
                          "train_seconds": am.train.metrics.get("train_seconds", float("nan")),
                          "rejected": [r.model_dump() for r in am.rejected]}
        doc["classification"]["rejected"] = [r.model_dump() for r in cm.rejected]
        doc["speed"] = {f"`{m.name}` v{m.version} ({m.task})": speed(store, m, Path(tmp), args.rounds)
                        for m in (am, cm)}
    write_results("sensor", doc, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
