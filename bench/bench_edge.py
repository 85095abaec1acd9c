"""`make bench-edge`: bare InferenceSession.run vs the agent pipeline vs torch eager, same frames, one run.

Targets (reference package, 3x224x224): agent end-to-end p50 <= 1.10x the bare run's p50, and agent
throughput >= 0.90x the bare run's. The small default model is reported too: there, fixed per-frame costs
(decode, preprocessing, publishing) dominate a sub-millisecond inference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from edge.agent import Agent
from edge.config import AgentConfig
from edge.package_fetch import fetch_version
from edge.pipeline import FrameResult
from edge.sources.synthetic import SyntheticSource
from shared.manifest import Manifest, parse_latest
from shared.object_store import LocalStore
from shared.percentiles import nearest_rank
from shared.signing import load_public_key

RESULTS = Path("bench/results")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the agent's own definition: every figure is an observed latency."""
    return nearest_rank(sorted(values), q)


@dataclass
class Row:
    """One line of the table."""

    package: str
    runner: str
    p50_ms: float
    p99_ms: float
    fps: float
    note: str = ""


def fetch(store: LocalStore, name: str, key: Path, dest: Path) -> tuple[Manifest, Path]:
    """The latest version, verified exactly as a device verifies it."""
    latest = parse_latest(store.get(f"models/{name}/latest.json"))
    (dest / name).mkdir(parents=True, exist_ok=True)
    pkg = fetch_version(store, name, latest.version, dest / name, [load_public_key(key)])
    return pkg.manifest, pkg.directory


def make_video(path: Path, frames: int, hw: tuple[int, int]) -> list[np.ndarray]:
    """An MJPG file of synthetic digit frames, and the decoded frames every runner gets."""
    h, w = hw
    src = SyntheticSource("digits", height=h, width=w, fps=None, frames=frames)
    src.open()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (w, h))
    while (frame := src.read()) is not None:
        img = frame.image if frame.image.ndim == 3 else cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
        writer.write(img)
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded.append(img)
    cap.release()
    return decoded


def bare(
    model_path: Path, manifest: Manifest, frames: list[np.ndarray], threads: int, pace: float | None = None,
    with_preprocess: bool = False,
) -> Row:
    """The limit: a plain InferenceSession.run loop (paced like the agent's latency run).

    with_preprocess: the same loop that also turns each decoded frame into the input tensor, i.e. the least a
    hand-written camera loop must do; it shows how much of the agent's overhead is preprocessing itself.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    inputs = _inputs(manifest, frames)
    if with_preprocess:
        from edge.preprocess import Preprocessor

        pre = Preprocessor(manifest.preprocess, manifest.preprocess.resize)
    for x in inputs[:10]:
        sess.run(None, {name: x})
    times = []
    period = 1.0 / pace if pace else 0.0
    t_all = time.perf_counter()
    for i, x in enumerate(inputs):
        if period:
            delay = t_all + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        sess.run(None, {name: pre(frames[i]) if with_preprocess else x})
        times.append((time.perf_counter() - t0) * 1e3)
    total = time.perf_counter() - t_all
    mode = f"paced at {pace:.0f} fps (latency run)" if pace else "unpaced (throughput run)"
    what = "preprocess + InferenceSession.run per frame" if with_preprocess else (
        "InferenceSession.run on preprocessed inputs")
    runner = f"bare ORT{' + preprocess' if with_preprocess else ''} {variant_of(model_path)}"
    return Row(manifest.name, runner, percentile(times, 50), percentile(times, 99), len(inputs) / total,
               f"{mode}; {what}")


def variant_of(path: Path) -> str:
    """fp32 / int8 from a variant file name."""
    return path.name.split(".")[1]


def agent_run(
    tmp: Path, store_dir: Path, key: Path, manifest: Manifest, video: Path, frames: int, threads: int,
    variant: str, broker_port: int | None, max_fps: float | None,
) -> Row:
    """The real agent on a file source (policy all), every result published as an MQTT event.

    Unpaced (max_fps None) it measures throughput; paced like a camera it measures per-frame latency,
    since an unpaced file keeps the capture queue full and e2e would then measure queueing, not work.
    """
    ends: list[float] = []
    captured: list[float] = []

    def observe(result: FrameResult) -> None:
        ends.append(time.perf_counter())
        captured.append(result.captured_at)

    cfg = AgentConfig.model_validate({
        "device": {"fleet": "bench", "device_id": f"bench-{manifest.name}"},
        "sync": {"model": manifest.name, "store": {"uri": str(store_dir)}, "cache_dir": str(tmp / f"cache-{variant}"),
                 "trusted_keys": [str(key)], "variant": variant, "poll_interval_s": 3600},
        "source": {"type": "video_file", "path": str(video), "policy": "all", "queue_size": 8, "max_fps": max_fps},
        "backend": {"type": "onnxruntime", "threads": threads},
        "events": {"mode": "every"},
        "mqtt": {"enabled": broker_port is not None, "port": broker_port or 1883, "telemetry_interval_s": 1.0,
                 "outbox_path": str(tmp / f"outbox-{manifest.name}-{variant}.sqlite"),
                 "outbox_max_messages": 100_000},
        "run": {"max_frames": frames},
    })
    agent = Agent(cfg, observer=observe)
    agent.start()
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    runner.join(timeout=600)
    agent.request_stop()
    agent.stop()
    if len(ends) != frames:
        raise SystemExit(f"agent produced {len(ends)} results for {frames} frames")
    e2e = [(e - c) * 1e3 for e, c in zip(ends, captured, strict=True)]
    fps = (len(ends) - 1) / (ends[-1] - ends[0])
    published = "event in the durable MQTT outbox (real broker)" if broker_port else "event queued (no broker)"
    mode = f"paced at {max_fps:.0f} fps (latency run)" if max_fps else "unpaced (throughput run)"
    return Row(manifest.name, f"agent {variant}", percentile(e2e, 50), percentile(e2e, 99), fps,
               f"{mode}; e2e = capture -> {published}")


def torch_eager(build_dir: Path, manifest: Manifest, frames: list[np.ndarray], threads: int) -> Row | None:
    """The trained torch model in eager mode on the same preprocessed inputs."""
    ckpt = build_dir / manifest.name / "model.pt"
    if not ckpt.exists():
        return Row(manifest.name, "torch eager", float("nan"), float("nan"), float("nan"),
                   f"unavailable: {ckpt} missing (train on this machine)")
    import torch

    from cloud.models import build_model

    torch.set_num_threads(threads)
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(**blob["arch"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    serving_inputs = _inputs(manifest, frames)
    times = []
    with torch.inference_mode():
        for x in serving_inputs[:5]:
            model(torch.from_numpy(x))
        t_all = time.perf_counter()
        for x in serving_inputs:
            t0 = time.perf_counter()
            model(torch.from_numpy(x))
            times.append((time.perf_counter() - t0) * 1e3)
        total = time.perf_counter() - t_all
    return Row(manifest.name, "torch eager", percentile(times, 50), percentile(times, 99), len(times) / total,
               f"torch {torch.__version__}, {threads} thread(s)")


def _inputs(manifest: Manifest, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The agent's own preprocessing applied once, so bare ORT and torch see the agent's tensors."""
    from edge.preprocess import Preprocessor

    pre = Preprocessor(manifest.preprocess, manifest.preprocess.resize)
    return [pre(f).copy() for f in frames]


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    """A loopback mosquitto if the binary is installed, so results are really published."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        return None, None
    from tests.fixtures.ports import free_port, wait_port

    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def main() -> None:
    """Run every comparison once and write the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--key", type=Path, default=Path(".keys/edgeferry.pub"))
    ap.add_argument("--build", type=Path, default=Path("build"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--packages", nargs="+", default=["reference", "digits"])
    ap.add_argument("--max-pace", type=float, default=200.0, help="Upper bound of the latency run's frame rate.")
    args = ap.parse_args()

    store = LocalStore(args.store)
    rows: list[Row] = []
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeferry-bench-") as t:
        tmp = Path(t)
        broker, port = start_broker(tmp)
        try:
            for name in args.packages:
                manifest, pkg_dir = fetch(store, name, args.key, tmp / "pkgs")
                hw = manifest.preprocess.resize
                frames = make_video(tmp / f"{name}.avi", args.frames, (max(hw[0], 64), max(hw[1], 64)))
                for variant in ("fp32", "int8"):
                    v = next((x for x in manifest.variants if x.precision == variant), None)
                    if v is None:
                        continue
                    b = bare(pkg_dir / v.file, manifest, frames, args.threads)
                    pace = min(0.5 * b.fps, args.max_pace)
                    b_lat = bare(pkg_dir / v.file, manifest, frames, args.threads, pace)
                    b_pre = bare(pkg_dir / v.file, manifest, frames, args.threads, pace, with_preprocess=True)
                    video = tmp / f"{name}.avi"
                    thr_run = agent_run(tmp, args.store, args.key, manifest, video, len(frames), args.threads,
                                        variant, port, None)
                    lat_run = agent_run(tmp, args.store, args.key, manifest, video, len(frames), args.threads,
                                        variant, port, pace)
                    rows += [b, thr_run, b_lat, b_pre, lat_run]
                    if name == "reference":
                        lat, thr = lat_run.p50_ms / b_lat.p50_ms, thr_run.fps / b.fps
                        verdicts.append(
                            f"{name} {variant}: agent e2e p50 = {lat:.2f}x bare (target <= 1.10: "
                            f"{'met' if lat <= 1.10 else 'NOT met'}); {lat_run.p50_ms / b_pre.p50_ms:.2f}x bare with "
                            f"preprocessing; throughput = {thr:.2f}x bare "
                            f"(target >= 0.90: {'met' if thr >= 0.90 else 'NOT met'})"
                        )
                eager = torch_eager(args.build, manifest, frames, args.threads)
                if eager is not None:
                    rows.append(eager)
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=10)
    write(rows, verdicts, args)


def write(rows: list[Row], verdicts: list[str], args: argparse.Namespace) -> None:
    """Print the table and write bench/results/edge.{md,json}."""
    header = "| package | runner | p50 ms | p99 ms | fps | note |\n|---|---|---:|---:|---:|---|"
    lines = [f"| {r.package} | {r.runner} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.fps:.1f} | {r.note} |" for r in rows]
    text = "\n".join([
        f"# bench-edge ({args.frames} frames, batch 1, {args.threads} intra-op thread(s), one run)",
        "",
        header,
        *lines,
        "",
        *[f"- {v}" for v in verdicts],
        "",
    ])
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "edge.md").write_text(text)
    doc: dict[str, Any] = {"rows": [asdict(r) for r in rows], "verdicts": verdicts, "frames": args.frames,
                           "threads": args.threads}
    (RESULTS / "edge.json").write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()
