"""`make bench-edge`, latency part (issue 16 §3-4): one paced camera on a single stream, agent vs the bare runtime.

Per package (reference 3x224x224, digits) and thread count (1, 2), in one run: the bare preprocess+run paced at the
camera's rate (default 30 fps); the real agent on the same frames paced the same way, e2e = capture -> event in the
durable MQTT outbox (real broker), once as shipped (run to completion when idle) and once with run to completion
switched off (every frame handed to the frame thread: the old path); the agent unpaced for throughput against the
ceiling (the slower of the bare run and decode+preprocess). Wall-clock ratios move with the machine's load, so CPU
time per frame is reported beside them: the agent's process CPU per frame against the naive decode-preprocess-run
loop's, which other work on the cores does not inflate. Targets: agent e2e p50 <= 1.05x bare (reference), <= bare
+ 0.15 ms (digits); throughput >= 0.95x the ceiling at 1 and 2 threads.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.bench_edge import (
    FRAME_HW,
    RESULTS,
    Row,
    chain_model,
    choose_on_device,
    decode_all,
    fmt_load,
    make_video,
    percentile,
    quietness,
    start_broker,
    timed,
    verdict,
)
from bench.machine import machine, machine_line, write_results
from edge.agent import Agent
from edge.capture import Capture
from edge.config import AgentConfig
from edge.frame_loop import FrameLoop
from edge.link.mqtt import MqttLink
from edge.pipeline import FrameResult
from edge.preprocess import Preprocessor
from edge.runtime_bench import ChosenModel
from shared.manifest import Manifest
from shared.object_store import LocalStore
from shared.topics import DeviceTopics


@contextmanager
def threaded_only() -> Iterator[None]:
    """Switch run to completion off: every frame is queued for the frame thread, as before issue 16."""
    real = Capture.attach_inline
    Capture.attach_inline = lambda self, run: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Capture.attach_inline = real  # type: ignore[method-assign]


class Arrivals:
    """When each event reaches a subscriber through the broker: e2e as a user of the events sees it."""

    def __init__(self, port: int, topic: str) -> None:
        self.times: list[float] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_message = lambda c, u, msg: self.times.append(time.perf_counter())
        self._client.on_subscribe = lambda c, u, mid, codes, props: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise SystemExit(f"the bench's subscriber could not subscribe to {topic}")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def sender_handoff_only() -> Iterator[None]:
    """Switch the link's direct publish off: every result waits for the mqtt-sender thread, as before."""
    real = MqttLink._may_go_direct
    MqttLink._may_go_direct = lambda self, first_id: False  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        MqttLink._may_go_direct = real  # type: ignore[method-assign]


def agent_config(tmp: Path, args: argparse.Namespace, manifest: Manifest, video: Path, frames: int, threads: int,
                 port: int | None, max_fps: float | None, tag: str) -> dict[str, Any]:
    """A file source (policy all) paced like a camera or unpaced, every result an MQTT event; the runtime chosen by
    measurement on the first run and taken from the agent's choice cache after (one cache per package and threads),
    so every run of a package serves the same runtime, variant and hint."""
    return {
        "device": {"fleet": "bench", "device_id": f"bench-{manifest.name}"},
        "sync": {"model": manifest.name, "store": {"uri": str(args.store)},
                 "cache_dir": str(tmp / f"cache-{manifest.name}-{threads}"),
                 "trusted_keys": [str(args.key)], "poll_interval_s": 3600, "benchmark_on_install": True,
                 "pinned_version": manifest.version},
        "source": {"type": "video_file", "path": str(video), "policy": "all", "queue_size": 8, "max_fps": max_fps},
        "backend": {"type": "auto", "threads": threads, "openvino": {"cache_dir": str(tmp / "ov-cache")},
                    "bench_runs": 10 if args.quick else 30, "bench_budget_s": 0.3 if args.quick else 1.0},
        "events": {"mode": "every"},
        "mqtt": {"enabled": port is not None, "port": port or 1883, "telemetry_interval_s": 1.0,
                 "outbox_path": str(tmp / f"outbox-{tag}.sqlite"), "outbox_max_messages": 100_000},
        "run": {"max_frames": frames},
    }


def agent_run(tmp: Path, args: argparse.Namespace, manifest: Manifest, video: Path, frames: int, threads: int,
              port: int | None, max_fps: float | None, label: str) -> Row:
    """The real agent in this process: e2e per result, its rate, process CPU per frame, and how frames ran."""
    ends: list[float] = []
    captured: list[float] = []

    def observe(result: FrameResult) -> None:
        ends.append(time.perf_counter())
        captured.append(result.captured_at)

    tag = f"{manifest.name}-{threads}-{label}".replace(" ", "-")
    cfg = AgentConfig.model_validate(agent_config(tmp, args, manifest, video, frames, threads, port, max_fps, tag))
    arrivals = Arrivals(port, DeviceTopics("bench", f"bench-{manifest.name}").events) if port else None
    agent = Agent(cfg, observer=observe)
    agent.start()
    runner = threading.Thread(target=agent.run, daemon=True)
    # CPU from the first result on: the install-time runtime measurement is not per-frame work.
    cpu_at_first: list[float] = []
    runner.start()
    while not ends and runner.is_alive():
        time.sleep(0.0005)
    cpu_at_first.append(time.process_time())
    first = len(ends)
    runner.join(timeout=600)
    cpu = time.process_time() - cpu_at_first[0]
    current = agent.slot.current
    served = current.model if current is not None else None
    serving = (f"{served.backend} {served.precision} {served.inference_precision}"
               if isinstance(served, ChosenModel) else "unknown")
    loop = agent.frames
    inline, queued = loop.run_modes() if isinstance(loop, FrameLoop) else (0, 0)
    agent.request_stop()
    agent.stop()
    if len(ends) != frames:
        raise SystemExit(f"agent produced {len(ends)} results for {frames} frames")
    e2e = [(e - c) * 1e3 for e, c in zip(ends, captured, strict=True)]
    wire = ""
    if arrivals is not None:
        deadline = time.monotonic() + 10
        while len(arrivals.times) < frames and time.monotonic() < deadline:
            time.sleep(0.01)
        arrivals.close()
        if len(arrivals.times) == frames:  # one event per frame, in order
            seen = [(a - c) * 1e3 for a, c in zip(arrivals.times, captured, strict=True)]
            wire = (f"; capture -> event at a subscriber via the broker p50 {percentile(seen, 50):.3f} ms, "
                    f"p99 {percentile(seen, 99):.3f} ms")
        else:
            wire = f"; {len(arrivals.times)} of {frames} events reached the subscriber"
    fps = (len(ends) - 1) / (ends[-1] - ends[0])
    mode = f"paced at {max_fps:.0f} fps" if max_fps else "unpaced (throughput)"
    return Row(manifest.name, threads, f"agent, {label} ({serving})", percentile(e2e, 50), percentile(e2e, 99),
               fps, cpu_ms=cpu * 1e3 / max(1, frames - first),
               note=f"{mode}; {inline} frames run to completion, {queued} queued; e2e = capture -> event in the "
               f"durable MQTT outbox{wire}")


def cpu_timed(run: Any, inputs: list[Any], pace: float | None) -> tuple[list[float], float, float]:
    """timed() plus the process CPU time per call in ms (runtimes with worker threads count whole)."""
    c0 = time.process_time()
    times, fps = timed(run, inputs, pace=pace, warmup=0)
    return times, fps, (time.process_time() - c0) * 1e3 / len(inputs)


def bench_package(name: str, threads: int, args: argparse.Namespace, tmp: Path,
                  port: int | None) -> tuple[list[Row], list[str]]:
    """Every row and verdict of one package at one thread count."""
    load_before = os.getloadavg()
    chosen, pkg_dir, manifest, sync = choose_on_device(tmp, args.store, args.key, name, threads, args.quick)
    chosen.close()
    pre = Preprocessor(manifest.preprocess, manifest.preprocess.resize)
    video = tmp / f"{name}.avi"
    if not video.exists():
        make_video(video, args.frames, FRAME_HW)
    decode_all(video, pre)
    frames, dec_times = decode_all(video, pre)
    inputs = [pre(f).copy() for f in frames]
    served = chain_model(sync, pkg_dir, manifest, chosen)
    idx = list(range(len(frames)))
    timed(served.run, inputs[:20])
    run_times, run_fps, run_cpu = cpu_timed(served.run, inputs, None)
    dec_fps = len(dec_times) / (sum(dec_times) / 1e3)
    bare_t, _, bare_cpu = cpu_timed(lambda i: served.run(pre(frames[i])), idx, args.fps)

    cap = cv2.VideoCapture(str(video))

    def naive(_: int) -> None:
        ok, img = cap.read()
        if ok:
            served.run(pre(img))

    _, _, naive_cpu = cpu_timed(naive, idx, None)
    cap.release()
    served.close()
    rows = [
        Row(name, threads, "bare run (chosen), unpaced", percentile(run_times, 50), percentile(run_times, 99),
            run_fps, cpu_ms=run_cpu, note="preprocessed inputs"),
        Row(name, threads, "decode + preprocess alone", percentile(dec_times, 50), percentile(dec_times, 99),
            dec_fps, note="640x480 MJPG"),
        Row(name, threads, "bare preprocess + run (chosen)", percentile(bare_t, 50), percentile(bare_t, 99),
            args.fps, cpu_ms=bare_cpu, note=f"paced at {args.fps:.0f} fps"),
        Row(name, threads, "naive loop: decode, preprocess, run", float("nan"), float("nan"), float("nan"),
            cpu_ms=naive_cpu, note="CPU per frame of the sequential loop a user writes"),
    ]
    n = len(frames)
    rtc = agent_run(tmp, args, manifest, video, n, threads, port, args.fps, "run to completion")
    with threaded_only():
        old = agent_run(tmp, args, manifest, video, n, threads, port, args.fps, "threaded only")
    thr = agent_run(tmp, args, manifest, video, n, threads, port, None, "unpaced")
    rows += [rtc, old, thr]
    if args.compare_handoff:
        with sender_handoff_only():
            rows.append(agent_run(tmp, args, manifest, video, n, threads, port, args.fps,
                                  "run to completion, sender hand-off"))
    load_after = os.getloadavg()
    bare = rows[2]
    ceiling = min(run_fps, dec_fps)
    ratio = thr.fps / ceiling
    out = [f"{name}, {threads} thread(s): agent throughput {thr.fps:.0f} fps = {ratio:.2f}x the ceiling "
           f"{ceiling:.0f} fps (target >= 0.95: {verdict(ratio >= 0.95)})"]
    for r in (rtc, old, *rows[7:]):
        what = r.runner.split(" (")[0]
        if name == "digits":
            above = r.p50_ms - bare.p50_ms
            out.append(f"{name}, {threads} thread(s), {what}: e2e p50 {r.p50_ms:.3f} ms = bare {bare.p50_ms:.3f} ms "
                       f"+ {above:.3f} ms (target <= +0.15 ms: {verdict(above <= 0.15)})")
        else:
            x = r.p50_ms / bare.p50_ms
            out.append(f"{name}, {threads} thread(s), {what}: e2e p50 {r.p50_ms:.3f} ms = {x:.2f}x bare "
                       f"{bare.p50_ms:.3f} ms (target <= 1.05: {verdict(x <= 1.05)})")
        out.append(f"{name}, {threads} thread(s), {what}: agent CPU {r.cpu_ms:.3f} ms a frame vs the naive loop's "
                   f"{naive_cpu:.3f} ms (+{r.cpu_ms - naive_cpu:.3f} ms: decode, preprocess, run, event, outbox, "
                   "MQTT)")
    out.append(f"{name}, {threads} thread(s): load average (1/5/15 min) {fmt_load(load_before)} before, "
               f"{fmt_load(load_after)} after ({quietness(load_before, load_after)})")
    return rows, out


def main() -> None:
    """Run the comparison once and write latency.{md,json}."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", "--key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=30.0, help="The camera's rate for the paced runs.")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--packages", nargs="+", default=["reference", "digits"])
    ap.add_argument("--quick", action="store_true", help="60 frames, 1 thread: checks the bench works.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--compare-handoff", action="store_true",
                    help="Also run paced with the MQTT link's direct publish off (results via the sender thread).")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.threads = min(args.frames, 60), args.threads[:1]
    load_at_start = os.getloadavg()
    store = LocalStore(args.store)
    rows: list[Row] = []
    verdicts: list[str] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeferry-latency-") as t:
        tmp = Path(t)
        broker, port = start_broker(tmp)
        try:
            for name in args.packages:
                if not store.exists(f"models/{name}/latest.json"):
                    skipped.append(f"{name}: not in {args.store} (make train-reference / make train-cloud)")
                    continue
                for threads in args.threads:
                    r, v = bench_package(name, threads, args, tmp, port)
                    rows += r
                    verdicts += v
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=10)
    write(rows, verdicts, skipped, args, load_at_start)


def write(rows: list[Row], verdicts: list[str], skipped: list[str], args: argparse.Namespace,
          load_at_start: tuple[float, float, float]) -> None:
    """Print the table and write latency-bench.{md,json} (latency.md holds the profiles and the reading)."""
    host = machine(load_at_start)
    lines = [f"| {r.package} | {r.threads} | {r.runner} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.fps:.1f} | "
             f"{r.cpu_ms:.3f} | {r.note} |" for r in rows]
    text = "\n".join([
        f"# bench-latency ({args.frames} frames of 640x480 MJPG, one stream paced at {args.fps:.0f} fps"
        f"{', QUICK mode' if args.quick else ''})",
        "",
        machine_line(host, when="at the start"),
        "",
        "| package | threads | runner | p50 ms | p99 ms | fps | CPU ms/frame | note |",
        "|---|---:|---|---:|---:|---:|---:|---|",
        *lines,
        "",
        *[f"- {v}" for v in verdicts],
        *[f"- skipped {s}" for s in skipped],
        "",
    ])
    doc = {**host, "rows": [asdict(r) for r in rows], "verdicts": verdicts, "skipped": skipped,
           "frames": args.frames, "fps": args.fps, "quick": args.quick, "load_at_start": load_at_start,
           "load_at_end": os.getloadavg()}
    write_results("latency-bench", doc, text, args.out)


if __name__ == "__main__":
    main()
