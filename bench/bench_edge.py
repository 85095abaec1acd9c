"""`make bench-edge`: every runtime x variant x inference hint this CPU can run, bare and inside the agent, one run.

Per package (reference 3x224x224, digits, the shapes-digits detector) and thread count (1, 2): the bare batch-1 run
p50/p99 of every candidate on preprocessed frames, with the one the agent's chooser picks marked (for the detector
also each candidate's mAP on its held-out synthetic scenes, so runtime x variant shows what it costs in boxes);
decode+preprocess alone; the naive
sequential decode-preprocess-run loop a user writes; the agent (chosen by measurement, as on a device) unpaced for
throughput and paced like a camera for end-to-end latency; torch eager. Targets (issue 8) are printed met / not met:
agent throughput >= 0.95x the ceiling (the slower of the bare run and decode+preprocess, which overlap on two
cores) and never below the naive loop; agent e2e p50 <= 1.05x bare preprocess+run (reference) or at most 0.15 ms
above it (digits). `--quick` runs a short version to check the benchmark itself works.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.bench_detect import eager_detector, eager_outputs, held_out, map_of
from bench.machine import RESULTS, fmt_load, machine, machine_line, write_results
from edge.agent import Agent
from edge.backends.factory import backend_chain
from edge.config import AgentConfig, AutoBackendConfig, SyncConfig
from edge.hardware import detect_hardware
from edge.model_sync import ModelSync
from edge.pipeline import FrameResult
from edge.preprocess import Preprocessor
from edge.runtime_bench import ChosenModel
from edge.sources.synthetic import SyntheticSource
from shared.manifest import Manifest, parse_latest
from shared.object_store import LocalStore
from shared.percentiles import nearest_rank
from shared.store_config import StoreConfig

FRAME_HW = (480, 640)  # camera-sized frames, as issue 8 specifies
# A 1-minute load average below this before a block (bench's own share removed after it) counts as quiet.
QUIET_LOAD = 0.5


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the agent's own definition: every figure is an observed latency."""
    return nearest_rank(sorted(values), q)


@dataclass
class Row:
    """One line of a timing table (bench-edge, bench-latency): wall-clock percentiles and rate, and where measured,
    the process RSS or the CPU time per frame."""

    package: str
    threads: int
    runner: str
    p50_ms: float
    p99_ms: float
    fps: float
    note: str = ""
    rss_mib: float | None = None
    cpu_ms: float = math.nan  # nan: not measured, printed as such


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
    return decode_all(path)[0]


def decode_all(path: Path, pre: Preprocessor | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Decoded frames (and, given a preprocessor, the per-frame decode+preprocess time in ms)."""
    cap = cv2.VideoCapture(str(path))
    out, times = [], []
    while True:
        t0 = time.perf_counter()
        ok, img = cap.read()
        if not ok:
            break
        if pre is not None:
            pre(img)
            times.append((time.perf_counter() - t0) * 1e3)
        out.append(img)
    cap.release()
    return out, times


def timed(
    run: Callable[[Any], Any], inputs: Sequence[Any], pace: float | None = None, warmup: int = 10
) -> tuple[list[float], float]:
    """Per-call ms of run(x) over inputs (optionally paced), and calls per second."""
    for x in inputs[:warmup]:
        run(x)
    times = []
    period = 1.0 / pace if pace else 0.0
    t_all = time.perf_counter()
    for i, x in enumerate(inputs):
        if period:
            delay = t_all + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times, len(inputs) / (time.perf_counter() - t_all)


def row(package: str, threads: int, runner: str, times: list[float], fps: float, note: str = "") -> Row:
    """A row from per-frame times."""
    return Row(package, threads, runner, percentile(times, 50), percentile(times, 99), fps, note)


def choose_on_device(
    tmp: Path, store_dir: Path, key: Path, name: str, threads: int, quick: bool
) -> tuple[ChosenModel, Path, Manifest, ModelSync]:
    """What the agent does on install: verify the package, time every candidate, serve the fastest that passes."""
    store = LocalStore(store_dir)
    version = parse_latest(store.get(f"models/{name}/latest.json")).version
    auto = AutoBackendConfig(threads=threads, openvino={"cache_dir": tmp / "ov-cache"},  # type: ignore[arg-type]
                             bench_runs=10 if quick else 30, bench_budget_s=0.3 if quick else 1.0)
    hw = detect_hardware()
    cfg = SyncConfig(model=name, store=StoreConfig(uri=str(store_dir)), cache_dir=tmp / f"sync-{name}-{threads}",
                     trusted_keys=[key])
    sync = ModelSync.from_config(cfg, backend_chain(hw, auto), hw)
    installed = sync.install(version)
    chosen, _ = sync.load(installed, remeasure=True)
    return chosen, installed.dir, installed.manifest, sync


def detection_map(manifest: Manifest, model: Any) -> str:
    """A detector candidate's mAP@.5 / mAP@.5:.95 on the package's held-out scenes at batch 1 ('' otherwise)."""
    if manifest.task != "detection":
        return ""
    run = getattr(model, "run_outputs", None)
    if run is None:
        return "; mAP n/a (this runtime gives no named outputs)"
    test, x = held_out(manifest)
    scores = map_of(manifest, test, x, run, batch=1)
    return f"; mAP@.5 {scores.map50:.4f}, mAP@.5:.95 {scores.map50_95:.4f} ({len(test)} held-out scenes)"


def candidate_rows(
    chosen: ChosenModel, sync: ModelSync, pkg_dir: Path, manifest: Manifest, inputs: list[np.ndarray], threads: int
) -> tuple[list[Row], Row | None]:
    """Bare run of every candidate the chooser considered (a detector's with its mAP); the chosen one marked."""
    from edge.backends.chain import BackendChain
    from edge.runtime_choice import Candidate

    chain = sync.backend
    assert isinstance(chain, BackendChain)
    rows: list[Row] = []
    picked: Row | None = None
    for c in chosen.result.candidates:
        label = f"{c.backend} {c.precision} {c.inference_precision} ({c.device})"
        if c.status == "rejected":
            rows.append(Row(manifest.name, threads, label, float("nan"), float("nan"), float("nan"),
                            f"rejected: {c.reason}"))
            continue
        variant = next(v for v in manifest.variants if v.file == c.variant)
        cand = Candidate(c.backend, c.device, variant, c.inference_precision)
        model = chain.load_candidate(pkg_dir / variant.file, cand, manifest)
        try:
            times, fps = timed(model.run, inputs)
            quality = detection_map(manifest, model)
        finally:
            model.close()
        mark = c.status == "chosen"
        r = row(manifest.name, threads, ("* " if mark else "") + "bare " + label, times, fps,
                f"chooser p50 {c.p50_ms:.3f} ms" + ("; CHOSEN" if mark else "") + quality)
        rows.append(r)
        if mark:
            picked = r
    return rows, picked


def agent_run(
    tmp: Path, store_dir: Path, key: Path, manifest: Manifest, video: Path, frames: int, threads: int,
    broker_port: int | None, max_fps: float | None, quick: bool,
) -> tuple[Row, str]:
    """The real agent on a file source (policy all), every result an MQTT event; it chooses its runtime itself.

    Unpaced (max_fps None) it measures throughput; paced like a camera it measures per-frame latency,
    since an unpaced file keeps the capture queue full and e2e would then measure queueing, not work.
    """
    ends: list[float] = []
    captured: list[float] = []

    def observe(result: FrameResult) -> None:
        ends.append(time.perf_counter())
        captured.append(result.captured_at)

    tag = f"{manifest.name}-{threads}-{'paced' if max_fps else 'unpaced'}"
    cfg = AgentConfig.model_validate(
        agent_config(tmp, store_dir, key, manifest, video, frames, threads, broker_port, max_fps, quick, tag)
    )
    agent = Agent(cfg, observer=observe)
    agent.start()
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    runner.join(timeout=600)
    current = agent.slot.current
    served = current.model if current is not None else None
    serving = (f"{served.backend} {served.precision} {served.inference_precision}"
               if isinstance(served, ChosenModel) else "unknown")
    agent.request_stop()
    agent.stop()
    if len(ends) != frames:
        raise SystemExit(f"agent produced {len(ends)} results for {frames} frames")
    e2e = [(e - c) * 1e3 for e, c in zip(ends, captured, strict=True)]
    fps = (len(ends) - 1) / (ends[-1] - ends[0])
    published = "event in the durable MQTT outbox (real broker)" if broker_port else "event queued (no broker)"
    mode = f"paced at {max_fps:.0f} fps (latency run)" if max_fps else "unpaced (throughput run)"
    return row(manifest.name, threads, f"agent ({serving})", e2e, fps,
               f"{mode}; e2e = capture -> {published}"), serving


def agent_config(
    tmp: Path, store_dir: Path, key: Path, manifest: Manifest, video: Path, frames: int, threads: int,
    broker_port: int | None, max_fps: float | None, quick: bool, tag: str, runtime: str | None = None,
) -> dict[str, Any]:
    """The agent's config for a bench run: a file source (policy all), every result an MQTT event; the runtime
    chosen by measurement, or forced to `runtime` (its variants and hints still measured)."""
    backend: dict[str, Any]
    if runtime is None:
        backend = {"type": "auto", "threads": threads, "openvino": {"cache_dir": str(tmp / "ov-cache")},
                   "bench_runs": 10 if quick else 30, "bench_budget_s": 0.3 if quick else 1.0}
    else:
        backend = {"type": runtime, "threads": threads}
        if runtime == "openvino":
            backend["cache_dir"] = str(tmp / "ov-cache")
    return {
        "device": {"fleet": "bench", "device_id": f"bench-{manifest.name}"},
        "sync": {"model": manifest.name, "store": {"uri": str(store_dir)}, "cache_dir": str(tmp / f"cache-{tag}"),
                 "trusted_keys": [str(key)], "poll_interval_s": 3600, "benchmark_on_install": True,
                 "pinned_version": manifest.version},
        "source": {"type": "video_file", "path": str(video), "policy": "all", "queue_size": 8, "max_fps": max_fps},
        "backend": backend,
        "events": {"mode": "every"},
        "mqtt": {"enabled": broker_port is not None, "port": broker_port or 1883, "telemetry_interval_s": 1.0,
                 "outbox_path": str(tmp / f"outbox-{tag}.sqlite"), "outbox_max_messages": 100_000},
        "run": {"max_frames": frames},
    }


def status_kib(pid: int, field: str) -> int:
    """One VmRSS/VmHWM-style figure of a live process, in KiB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def agent_rss(
    tmp: Path, store_dir: Path, key: Path, manifest: Manifest, video: Path, frames: int, threads: int,
    broker_port: int | None, runtime: str, quick: bool,
) -> Row:
    """The real agent process (`edgeferry agent`) with its runtime forced, serving the package: its peak RSS."""
    tag = f"{manifest.name}-{threads}-rss-{runtime}"
    cfg = agent_config(tmp, store_dir, key, manifest, video, frames, threads, broker_port, None, quick, tag,
                       runtime=runtime)
    path = tmp / f"agent-{tag}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    exe = Path(sys.executable).with_name("edgeferry")
    with subprocess.Popen([str(exe), "agent", "--config", str(path)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as proc:
        peak = serving = 0
        while proc.poll() is None:
            peak = max(peak, status_kib(proc.pid, "VmHWM"))
            # The last sample before exit: the model serves its last frames (install-time measurement is over).
            serving = status_kib(proc.pid, "VmRSS") or serving
            time.sleep(0.05)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"agent process for {tag} exited {proc.returncode}: {err.strip()[-2000:]}")
    return Row(manifest.name, threads, f"agent process RSS ({runtime})", float("nan"), float("nan"), float("nan"),
               f"RSS of the `edgeferry agent` process serving {frames} frames, {runtime} forced; peak "
               f"{peak / 1024:.0f} MiB while it measured its candidates on install", rss_mib=serving / 1024)


def torch_eager(build_dir: Path, manifest: Manifest, inputs: list[np.ndarray], threads: int) -> Row:
    """The trained torch model in eager mode on the same preprocessed inputs."""
    ckpt = build_dir / manifest.name / "model.pt"
    if not ckpt.exists():
        return Row(manifest.name, threads, "torch eager", float("nan"), float("nan"), float("nan"),
                   f"unavailable: {ckpt} missing (train on this machine)")
    import torch

    from cloud.models import build_model

    torch.set_num_threads(threads)
    detector = eager_detector(build_dir, manifest.name) if manifest.task == "detection" else None
    if detector is not None:
        times, fps = timed(eager_outputs(detector), inputs, warmup=5)
        return row(manifest.name, threads, "torch eager", times, fps, f"torch {torch.__version__}, with decode")
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = build_model(**blob["arch"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    with torch.inference_mode():
        times, fps = timed(lambda x: model(torch.from_numpy(x)), inputs, warmup=5)
    return row(manifest.name, threads, "torch eager", times, fps, f"torch {torch.__version__}")


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


def verdict(cond: bool) -> str:
    """met / NOT met."""
    return "met" if cond else "NOT met"


def bench_package(
    name: str, threads: int, args: argparse.Namespace, tmp: Path, port: int | None
) -> tuple[list[Row], list[str]]:
    """Every row and target verdict of one package at one thread count."""
    load_before = os.getloadavg()
    chosen, pkg_dir, manifest, sync = choose_on_device(tmp, args.store, args.key, name, threads, args.quick)
    pre = Preprocessor(manifest.preprocess, manifest.preprocess.resize)
    video = tmp / f"{name}.avi"
    if not video.exists():
        make_video(video, args.frames, FRAME_HW)
    decode_all(video, pre)  # warm the decoder and the page cache; the second pass is timed
    frames, dec_times = decode_all(video, pre)
    inputs = [pre(f).copy() for f in frames]
    rows, picked = candidate_rows(chosen, sync, pkg_dir, manifest, inputs, threads)
    chosen.close()
    dec = row(name, threads, "decode + preprocess alone", dec_times,
              len(dec_times) / (sum(dec_times) / 1e3), "640x480 MJPG decode + the agent's preprocessing")

    served = chain_model(sync, pkg_dir, manifest, chosen)
    cap = cv2.VideoCapture(str(video))
    t_naive: list[float] = []
    t0 = time.perf_counter()
    while True:
        t_frame = time.perf_counter()
        ok, img = cap.read()
        if not ok:
            break
        served.run(pre(img))
        t_naive.append((time.perf_counter() - t_frame) * 1e3)
    naive_fps = len(t_naive) / (time.perf_counter() - t0)
    cap.release()
    naive = row(name, threads, "naive loop: decode, preprocess, run", t_naive, naive_fps,
                "sequential, with the chosen backend, as a user writes it in ten lines")
    bare_fps = picked.fps if picked else float("nan")
    pace = min(0.5 * min(bare_fps, dec.fps), args.max_pace)
    t_pre, _ = timed(lambda i: served.run(pre(frames[i])), list(range(len(frames))), pace=pace)
    served.close()
    bare_pre = row(name, threads, "bare preprocess + run (chosen)", t_pre, pace, f"paced at {pace:.0f} fps")
    thr, serving = agent_run(tmp, args.store, args.key, manifest, video, len(frames), threads, port, None, args.quick)
    lat, _ = agent_run(tmp, args.store, args.key, manifest, video, len(frames), threads, port, pace, args.quick)
    rows += [dec, naive, bare_pre, thr, lat, torch_eager(args.build, manifest, inputs, threads)]
    rss: list[Row] = []
    if threads == args.threads[0]:  # memory does not depend on the thread count; once per package saves minutes
        runtimes = sorted({c.backend for c in chosen.result.candidates})
        rss = [agent_rss(tmp, args.store, args.key, manifest, video, min(len(frames), 100), threads, port, rt,
                         args.quick) for rt in runtimes]
        rows += rss
    load_after = os.getloadavg()
    ceiling = min(bare_fps, dec.fps)
    ratio = thr.fps / ceiling
    verdicts = [
        f"{name}, {threads} thread(s): chooser serves {serving}; agent throughput {thr.fps:.0f} fps = {ratio:.2f}x "
        f"the ceiling {ceiling:.0f} fps (target >= 0.95: {verdict(ratio >= 0.95)}); vs naive loop "
        f"{thr.fps / naive_fps:.2f}x (target >= 1.0: {verdict(thr.fps >= naive_fps)})",
    ]
    if manifest.task == "detection":
        r = lat.p50_ms / bare_pre.p50_ms
        verdicts.append(f"{name}, {threads} thread(s): agent e2e p50 = {r:.2f}x bare preprocess+run, tracking, "
                        "object events and zone counts included (no target for the detector)")
    elif name == "digits":
        above = lat.p50_ms - bare_pre.p50_ms
        verdicts.append(f"{name}, {threads} thread(s): agent e2e p50 {lat.p50_ms:.3f} ms = bare preprocess+run "
                        f"+ {above:.3f} ms (target <= +0.15 ms: {verdict(above <= 0.15)})")
    else:
        r = lat.p50_ms / bare_pre.p50_ms
        verdicts.append(f"{name}, {threads} thread(s): agent e2e p50 = {r:.2f}x bare preprocess+run "
                        f"(target <= 1.05: {verdict(r <= 1.05)})")
    for m in rss:
        if name == "reference" and m.runner.endswith("(onnxruntime)") and m.rss_mib is not None:
            verdicts.append(f"{name}: agent RSS serving with ONNX Runtime {m.rss_mib:.0f} MiB "
                            f"(target < 250 MiB: {verdict(m.rss_mib < 250)}; {m.note.split('; ')[-1]})")
    verdicts.append(f"{name}, {threads} thread(s): load average (1/5/15 min) {fmt_load(load_before)} before, "
                    f"{fmt_load(load_after)} after ({quietness(load_before, load_after)})")
    return rows, verdicts


def quietness(before: tuple[float, float, float], after: tuple[float, float, float]) -> str:
    """Whether other work shared the cores: the bench itself keeps about one core busy."""
    others = max(before[0], after[0] - 1.0)
    if others < QUIET_LOAD:
        return "quiet machine"
    return "other work shared the cores: ratios are noisy, rerun on a quiet machine"


def chain_model(sync: ModelSync, pkg_dir: Path, manifest: Manifest, chosen: ChosenModel) -> Any:
    """A fresh load of the chosen candidate (the chooser's copy is closed after the candidate rows)."""
    from edge.backends.chain import BackendChain

    chain = sync.backend
    assert isinstance(chain, BackendChain)
    return chain.load_candidate(pkg_dir / chosen.candidate.variant.file, chosen.candidate, manifest)


def main() -> None:
    """Run every comparison once and write the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", "--key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"),
                    help="public key the packages must be signed with (--key: old spelling)")
    ap.add_argument("--build", type=Path, default=Path("build"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--packages", nargs="+", default=["reference", "digits", "shapes-digits"])
    ap.add_argument("--max-pace", type=float, default=200.0, help="Upper bound of the latency run's frame rate.")
    ap.add_argument("--quick", action="store_true", help="60 frames, 1 thread, short choice: checks the bench works.")
    ap.add_argument("--out", type=Path, default=RESULTS, help="Where edge.md and edge.json go.")
    args = ap.parse_args()
    args.load_at_start = os.getloadavg()
    if args.quick:
        args.frames, args.threads = min(args.frames, 60), args.threads[:1]

    store = LocalStore(args.store)
    rows: list[Row] = []
    verdicts: list[str] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeferry-bench-") as t:
        tmp = Path(t)
        broker, port = start_broker(tmp)
        try:
            for name in args.packages:
                if not store.exists(f"models/{name}/latest.json"):
                    how = {"reference": "make train-reference", "shapes-digits": "make train-detect"}.get(
                        name, "make train-cloud")
                    skipped.append(f"{name}: not in {args.store} ({how})")
                    continue
                for threads in args.threads:
                    r, v = bench_package(name, threads, args, tmp, port)
                    rows += r
                    verdicts += v
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=10)
    write(rows, verdicts, skipped, args)


def write(rows: list[Row], verdicts: list[str], skipped: list[str], args: argparse.Namespace) -> None:
    """Print the table and write edge.{md,json}."""
    host = machine()
    host["load"] = list(args.load_at_start)
    header = ("| package | threads | runner | p50 ms | p99 ms | fps | RSS MiB | note |\n"
              "|---|---:|---|---:|---:|---:|---:|---|")
    lines = [f"| {r.package} | {r.threads} | {r.runner} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.fps:.1f} | "
             f"{'' if r.rss_mib is None else f'{r.rss_mib:.0f}'} | {r.note} |" for r in rows]
    text = "\n".join([
        f"# bench-edge ({args.frames} frames of 640x480 MJPG, batch 1, one run{', QUICK mode' if args.quick else ''})",
        "",
        machine_line(host, when="at the start"),
        "",
        "`*` marks the candidate the agent's chooser serves (fastest that passes its gates).",
        "",
        header,
        *lines,
        "",
        *[f"- {v}" for v in verdicts],
        *[f"- skipped {s}" for s in skipped],
        "",
    ])
    doc: dict[str, Any] = {**host, "rows": [asdict(r) for r in rows], "verdicts": verdicts,
                           "skipped": skipped, "frames": args.frames, "threads": args.threads, "quick": args.quick,
                           "load_at_start": args.load_at_start, "load_at_end": os.getloadavg()}
    write_results("edge", doc, text, args.out)


if __name__ == "__main__":
    main()
