"""`make bench-edge` (streams part): one agent serving four 640x480 MJPG cameras on the reference model, against
what the same cores can do bare and against four single-stream agents side by side; a stalled camera; RSS.

Figures (issue 16 §4, all ratios within this one run):
- aggregate throughput of one agent serving 4 unpaced file cameras (policy fifo: every frame inferred) against the
  batched bare ceiling: the slower of 4-way decode+preprocess (four threads, the served recipe) and a bare batched
  run at the batch size the agent chose (target >= 0.90x);
- the same against four single-stream `edgeferry agent` processes run side by side on the same cores, each result
  an event on a local broker, counted over the seconds all four were producing (target >= 1.5x);
- four cameras paced at 30 fps, then the same with one camera stalled (its reads hang until the stall watchdog
  reconnects it, again and again): the e2e p99 of the three others, delta against one frame interval;
- RSS of the agent process serving 4 streams against the same agent serving 1 (target <= 1.3x).
`--quick` runs short versions to check the benchmark itself works.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from bench.bench_edge import decode_all, make_video, start_broker, status_kib
from bench.machine import RESULTS, machine, machine_line, uptime, write_results
from edge.agent import Agent
from edge.config import AgentConfig
from edge.hot_swap import ServingModel
from edge.pipeline import FrameResult
from edge.preprocess import Preprocessor
from edge.sources.base import Frame, FrameSource
from edge.sources.synthetic import SyntheticSource
from edge.streams.batch_infer import BatchRunner
from edge.streams.server import MultiStreamLoop
from shared.manifest import parse_latest
from shared.object_store import LocalStore
from shared.percentiles import nearest_rank

FRAME_HW = (480, 640)
CAMERAS = ("cam1", "cam2", "cam3", "cam4")
PACE_FPS = 30.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (nan when empty)."""
    return float(nearest_rank(sorted(values), q)) if values else float("nan")


def base_config(args: argparse.Namespace, tmp: Path, tag: str, port: int | None) -> dict[str, Any]:
    """An agent config (no source yet) serving the pinned reference package with the runtime forced."""
    return {
        "device": {"fleet": "bench", "device_id": f"streams-{tag}"},
        "sync": {"model": args.package, "store": {"uri": str(args.store.resolve())},
                 "cache_dir": str(tmp / f"cache-{tag}"), "trusted_keys": [str(args.key.resolve())],
                 "poll_interval_s": 3600, "pinned_version": args.version, "variant": args.variant},
        "backend": {"type": args.runtime, "threads": args.threads}
        | ({"spin": args.spin == "on"} if args.runtime == "onnxruntime" and args.spin != "auto" else {})
        | ({"streams_mode": args.ov_mode} if args.runtime == "openvino" else {}),
        "events": {"mode": "every"},
        "mqtt": {"enabled": port is not None, "port": port or 1883, "telemetry_interval_s": 1.0,
                 "outbox_path": str(tmp / f"outbox-{tag}.sqlite"), "outbox_max_messages": 200_000},
    }


def camera(name: str, video: Path, *, loop: bool, pace: float | None) -> dict[str, Any]:
    """One file camera: every frame inferred (fifo, never stale), paced like a camera or as fast as it goes."""
    return {"name": name, "source": {"type": "video_file", "path": str(video), "loop": loop},
            "policy": "fifo", "stale_ms": None, "ring_size": 4, "max_fps": pace, "stall_s": 0.5}


class Results:
    """Per stream: (capture stamp, result time) of every result, from the agent's observer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_stream: dict[str, list[tuple[float, float]]] = defaultdict(list)
        # Process CPU seconds (all threads) at the first and the latest result: CPU per frame of the agent.
        self.cpu: list[float] = []

    def __call__(self, result: FrameResult) -> None:
        with self.lock:
            self.by_stream[result.stream].append((result.captured_at, time.perf_counter()))
            cpu = time.process_time()
            if self.cpu:
                self.cpu[1:] = [cpu]
            else:
                self.cpu.append(cpu)

    def cpu_ms_per_frame(self) -> float:
        """Process CPU ms spent per result between the first and the last result (nan with fewer than two)."""
        frames = sum(len(rows) for rows in self.by_stream.values())
        if len(self.cpu) < 2 or frames < 2:
            return float("nan")
        return (self.cpu[1] - self.cpu[0]) * 1e3 / (frames - 1)

    def e2e_ms(self, stream: str, skip_s: float) -> list[float]:
        """e2e of a stream's results after its first skip_s seconds (warm-up)."""
        rows = self.by_stream.get(stream, [])
        if not rows:
            return []
        start = rows[0][1] + skip_s
        return [(end - cap) * 1e3 for cap, end in rows if end >= start]


def run_agent(cfg: dict[str, Any], on_result: Results, swap: dict[str, FrameSource] | None = None,
              after: Callable[[Agent], Any] | None = None) -> Any:
    """Run an in-process agent until its bounds end it; `after` sees it before it stops."""
    agent = Agent(AgentConfig.model_validate(cfg), observer=on_result)
    frames = agent.frames
    assert isinstance(frames, MultiStreamLoop)
    for name, source in (swap or {}).items():
        frames.captures[name].source = source
    agent.start()
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    runner.join(timeout=900)
    try:
        return after(agent) if after is not None else None
    finally:
        agent.request_stop()
        agent.stop()


class StalledCamera(SyntheticSource):
    """A camera that opens but never delivers: each read hangs until the stall watchdog interrupts it."""

    def __init__(self) -> None:
        super().__init__("digits", height=FRAME_HW[0], width=FRAME_HW[1], fps=None)
        self._wake = threading.Event()

    def open(self) -> None:
        self._wake.clear()
        super().open()

    def read(self) -> Frame | None:
        self._wake.wait()
        return None

    def interrupt(self) -> None:
        self._wake.set()


def throughput(args: argparse.Namespace, tmp: Path, video: Path, port: int | None) -> dict[str, Any]:
    """4 unpaced cameras through one agent; then, on its served model, the bare batched run and 4-way decode."""
    cfg = base_config(args, tmp, "four", port)
    cfg["streams"] = [camera(n, video, loop=False, pace=None) for n in CAMERAS]
    cfg["batching"] = {"max_size": 4, "wait_ms": 2.0, "budget_ms": args.budget_ms}
    cfg["run"] = {"max_frames": args.frames * len(CAMERAS)}
    results = Results()

    def bare(agent: Agent) -> dict[str, Any]:
        serving = agent.slot.current
        frames = agent.frames
        assert serving is not None and isinstance(frames, MultiStreamLoop)
        size = frames.scheduler.max_size
        cpu0 = time.process_time()
        bare_fps = bare_batched_fps(serving, size, args.frames)
        cpu1 = time.process_time()
        decode4_fps, decoded = decode_preprocess_fps(video, serving, len(CAMERAS))
        cpu2 = time.process_time()
        runs = max(10, args.frames // size) * size
        return {"batch_size": size, "bare_batched_fps": bare_fps,
                "serving": f"{serving.model.backend} {serving.variant.precision}",
                "batched_frames": frames.runner.batched_frames,
                "decode4_fps": decode4_fps,
                # CPU ms per frame of each bare part (process CPU over all its threads; warm-up runs included).
                "bare_cpu_ms": (cpu1 - cpu0) * 1e3 / (runs + 5 * size),
                "decode4_cpu_ms": (cpu2 - cpu1) * 1e3 / decoded if decoded else float("nan")}

    out = run_agent(cfg, results, after=bare)
    ends = sorted(end for rows in results.by_stream.values() for _, end in rows)
    frames_done = len(ends)
    out["agent_fps"] = (frames_done - 1) / (ends[-1] - ends[0]) if frames_done > 1 else 0.0
    out["agent_frames"] = frames_done
    out["ceiling_fps"] = min(out["bare_batched_fps"], out["decode4_fps"])
    # On cores that run both halves, each frame costs its decode+preprocess time plus its share of a batch.
    out["shared_ceiling_fps"] = 1.0 / (1.0 / out["bare_batched_fps"] + 1.0 / out["decode4_fps"])
    out["agent_cpu_ms"] = results.cpu_ms_per_frame()
    return out


def bare_batched_fps(serving: ServingModel, size: int, frames: int) -> float:
    """Frames per second of the served model run on batches of `size` preprocessed frames, nothing else."""
    image = np.zeros((*FRAME_HW, 3), np.uint8)
    tensors = [serving.preprocessor(image).copy() for _ in range(size)]
    runner = BatchRunner()
    for _ in range(5):
        runner.run(serving, tensors)
    runs = max(10, frames // size)
    t0 = time.perf_counter()
    for _ in range(runs):
        runner.run(serving, tensors)
    return runs * size / (time.perf_counter() - t0)


def decode_preprocess_fps(video: Path, serving: ServingModel, ways: int) -> tuple[float, int]:
    """Aggregate frames per second of `ways` threads each decoding the file and preprocessing it (served recipe),
    and the frames decoded in all."""
    counts = [0] * ways

    def one(i: int) -> None:
        pre = Preprocessor(serving.manifest.preprocess)
        counts[i] = len(decode_all(video, pre)[1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(ways)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0), sum(counts)


def paced(args: argparse.Namespace, tmp: Path, video: Path, port: int | None, stall: bool) -> dict[str, float]:
    """4 cameras at 30 fps for duration_s (one stalled, or none): each stream's e2e p99 after a warm-up."""
    tag = "stall" if stall else "paced"
    cfg = base_config(args, tmp, tag, port)
    cfg["streams"] = [camera(n, video, loop=True, pace=PACE_FPS) for n in CAMERAS]
    cfg["batching"] = {"max_size": 4, "wait_ms": 2.0, "budget_ms": args.budget_ms}
    cfg["run"] = {"duration_s": args.paced_s}
    results = Results()
    run_agent(cfg, results, swap={CAMERAS[-1]: StalledCamera()} if stall else None)
    return {n: pct(results.e2e_ms(n, 2.0), 99) for n in CAMERAS} | {
        f"{n}_frames": float(len(results.by_stream.get(n, []))) for n in CAMERAS}


def agent_process(cfg: dict[str, Any], path: Path) -> subprocess.Popen[bytes]:
    """`edgeferry agent` on this config, as a device runs it."""
    path.write_text(json.dumps(cfg))  # JSON is YAML
    exe = Path(sys.executable).with_name("edgeferry")
    return subprocess.Popen([str(exe), "agent", "--config", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def side_by_side(args: argparse.Namespace, tmp: Path, video: Path, port: int) -> dict[str, float]:
    """Four single-stream agent processes at once; aggregate results/s over the seconds all four produced."""
    arrivals: dict[str, list[float]] = defaultdict(list)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: arrivals[m.topic.split("/")[2]].append(time.perf_counter())
    client.connect("127.0.0.1", port)
    client.subscribe("edgeferry/bench/+/events", qos=0)
    client.loop_start()
    procs = []
    try:
        for n in CAMERAS:
            cfg = base_config(args, tmp, f"single-{n}", port)
            cfg["backend"]["threads"] = 1
            # Looped and bounded in time, so all four produce together however staggered their starts are.
            cfg["source"] = {"type": "video_file", "path": str(video), "policy": "all", "queue_size": 8,
                             "loop": True}
            cfg["run"] = {"duration_s": args.single_s}
            procs.append(agent_process(cfg, tmp / f"single-{n}.yaml"))
        for p in procs:
            p.wait(timeout=900)
            if p.returncode != 0:
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                raise SystemExit(f"a single-stream agent exited {p.returncode}: {err.strip()[-2000:]}")
        time.sleep(1.0)
    finally:
        client.loop_stop()
        client.disconnect()
    if len(arrivals) != len(CAMERAS):
        raise SystemExit(f"events came from {len(arrivals)} of {len(CAMERAS)} single-stream agents")
    start = max(ts[0] for ts in arrivals.values())
    end = min(ts[-1] for ts in arrivals.values())
    if end <= start:
        raise SystemExit("the four single-stream agents never produced at the same time; raise --single-s")
    inside = sum(1 for ts in arrivals.values() for t in ts if start <= t <= end)
    return {"fps": inside / (end - start) if end > start else 0.0, "overlap_s": end - start,
            "events": float(sum(len(ts) for ts in arrivals.values()))}


def rss(args: argparse.Namespace, tmp: Path, video: Path, port: int | None, streams: int) -> float:
    """VmRSS (MiB) of an agent process serving `streams` paced cameras, sampled near the end of its run."""
    cfg = base_config(args, tmp, f"rss-{streams}", port)
    cfg["streams"] = [camera(n, video, loop=True, pace=PACE_FPS) for n in CAMERAS[:streams]]
    cfg["batching"] = {"max_size": 4, "wait_ms": 2.0}
    cfg["run"] = {"duration_s": args.paced_s}
    proc = agent_process(cfg, tmp / f"rss-{streams}.yaml")
    last = 0
    while proc.poll() is None:
        last = status_kib(proc.pid, "VmRSS") or last
        time.sleep(0.05)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"agent process ({streams} streams) exited {proc.returncode}: {err.strip()[-2000:]}")
    return last / 1024


def verdict(cond: bool) -> str:
    """met / NOT met."""
    return "met" if cond else "NOT met"


def main() -> None:
    """Run every comparison once and write bench/results/streams.{md,json}."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"))
    ap.add_argument("--package", default="reference")
    ap.add_argument("--runtime", default="onnxruntime", help="Runtime every agent here is forced to.")
    ap.add_argument("--variant", default="int8", help="Variant every agent here serves (sync.variant).")
    ap.add_argument("--threads", type=int, default=2, help="Runtime threads of the 4-stream agent (singles: 1).")
    ap.add_argument("--frames", type=int, default=200, help="Frames per camera in the throughput runs.")
    ap.add_argument("--paced-s", type=float, default=10.0, help="Seconds of each paced (latency, RSS) run.")
    ap.add_argument("--single-s", type=float, default=30.0,
                    help="Seconds each single-stream agent runs (from its start, model install included).")
    ap.add_argument("--spin", choices=("auto", "on", "off"), default="auto",
                    help="backend.spin of every agent here (onnxruntime): off lets idle intra-op workers sleep; "
                         "auto leaves it unset, as shipped (the 4-stream agent sleeps, a single-stream one spins).")
    ap.add_argument("--ov-mode", choices=("batch", "async"), default="batch",
                    help="backend.streams_mode of every agent here (openvino): one batched call, or async requests.")
    ap.add_argument("--budget-ms", type=float, default=60.0, help="batching.budget_ms of the 4-stream agent.")
    ap.add_argument("--quick", action="store_true", help="Short runs: checks the bench works.")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.frames, args.paced_s, args.single_s = min(args.frames, 40), min(args.paced_s, 5.0), 15.0
    store = LocalStore(args.store)
    latest = f"models/{args.package}/latest.json"
    if not store.exists(latest):
        raise SystemExit(f"{args.package} is not in {args.store}: run make train-reference first")
    args.version = parse_latest(store.get(latest)).version
    load_at_start = os.getloadavg()  # read once: the machine line, the uptime line and the JSON all show it
    head = machine(load_at_start)
    uptime_before = uptime(load_at_start)
    with tempfile.TemporaryDirectory(prefix="edgeferry-bench-streams-") as t:
        tmp = Path(t)
        video = tmp / "camera.avi"
        make_video(video, args.frames, FRAME_HW)
        broker, port = start_broker(tmp)
        try:
            fig = throughput(args, tmp, video, port)
            singles = side_by_side(args, tmp, video, port) if port is not None else None
            healthy = paced(args, tmp, video, port, stall=False)
            stalled = paced(args, tmp, video, port, stall=True)
            rss1, rss4 = rss(args, tmp, video, port, 1), rss(args, tmp, video, port, 4)
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=10)
    load_at_end = os.getloadavg()
    write(args, head, uptime_before, uptime(load_at_end), load_at_end, fig, singles, healthy, stalled, rss1, rss4)


def write(args: argparse.Namespace, head: dict[str, Any], uptime_before: str, uptime_after: str,
          load_at_end: tuple[float, float, float], fig: dict[str, Any], singles: dict[str, float] | None,
          healthy: dict[str, float], stalled: dict[str, float], rss1: float, rss4: float) -> None:
    """streams.md and streams.json; the JSON records the load as load_at_start/load_at_end, as every bench that
    feeds edge.md does (head's load is the start's reading)."""
    interval = 1000.0 / PACE_FPS
    others = CAMERAS[:-1]
    delta = max(stalled[n] - healthy[n] for n in others)
    ceiling_ratio = fig["agent_fps"] / fig["ceiling_fps"] if fig["ceiling_fps"] else 0.0
    single_ratio = fig["agent_fps"] / singles["fps"] if singles and singles["fps"] else float("nan")
    rss_ratio = rss4 / rss1 if rss1 else float("nan")
    verdicts = [
        f"aggregate throughput {fig['agent_fps']:.1f} fps = {ceiling_ratio:.2f}x the batched bare ceiling "
        f"{fig['ceiling_fps']:.1f} fps (target >= 0.90x): {verdict(ceiling_ratio >= 0.90)}",
        (f"against four single-stream agents side by side ({singles['fps']:.1f} fps together): {single_ratio:.2f}x "
         f"(target >= 1.5x): {verdict(single_ratio >= 1.5)}") if singles else
        "against four single-stream agents: not measured (no mosquitto to count their events)",
        f"one stalled camera among four: the others' e2e p99 moved by at most {delta:+.1f} ms, one frame interval "
        f"is {interval:.1f} ms (target < 1 interval): {verdict(delta < interval)}",
        f"RSS 4 streams {rss4:.0f} MiB vs 1 stream {rss1:.0f} MiB = {rss_ratio:.2f}x (target <= 1.3x): "
        f"{verdict(rss_ratio <= 1.3)}",
    ]
    lines = [
        f"# bench-streams (4 synthetic MJPG cameras at {FRAME_HW[1]}x{FRAME_HW[0]}, {args.package} "
        f"v{args.version}, {args.runtime} {args.variant} forced{f', spin {args.spin}' if args.spin != 'auto' else ''}"
        f"{f', streams_mode {args.ov_mode}' if args.runtime == 'openvino' else ''}"
        f"{', quick' if args.quick else ''})",
        "",
        machine_line(head, when="at the start"),
        "",
        f"Load: `{uptime_before}` before, `{uptime_after}` after. These 2 cores were shared with about 8 other "
        "helpers' builds, tests and trainings while this ran: "
        "every figure here is noisy, and the ratios (measured minutes apart, not interleaved) carry that noise.",
        "",
        "## Verdicts",
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| 4-stream agent, unpaced, every frame ({fig['agent_frames']} results, {fig['serving']}, batch size "
        f"{fig['batch_size']} chosen within {args.budget_ms:g} ms, {fig['batched_frames']} frames batched) fps | "
        f"{fig['agent_fps']:.1f} |",
        f"| bare batched run at batch {fig['batch_size']} (preprocessed frames, nothing else) fps | "
        f"{fig['bare_batched_fps']:.1f} |",
        f"| 4-way decode+preprocess (4 threads) fps | {fig['decode4_fps']:.1f} |",
        f"| ceiling (slower of the two) fps | {fig['ceiling_fps']:.1f} |",
        f"| shared-core ceiling 1/(1/bare + 1/decode) fps (both halves on the same 2 cores) | "
        f"{fig['shared_ceiling_fps']:.1f} |",
        f"| agent / shared-core ceiling | {fig['agent_fps'] / fig['shared_ceiling_fps']:.2f}x |",
        f"| process CPU ms per frame: agent / bare batched run + 4-way decode+preprocess | "
        f"{fig['agent_cpu_ms']:.2f} / {fig['bare_cpu_ms']:.2f} + {fig['decode4_cpu_ms']:.2f} |",
    ]
    if singles:
        lines.append(f"| 4 single-stream agent processes together, 1 runtime thread each ({singles['overlap_s']:.1f} s "
                     f"all producing) fps | {singles['fps']:.1f} |")
    for n in CAMERAS:
        lines.append(f"| {n} e2e p99 ms, 4 healthy at {PACE_FPS:.0f} fps / with {CAMERAS[-1]} stalled | "
                     f"{healthy[n]:.1f} / {stalled[n]:.1f} |")
    counts = " ".join(f"{healthy[n + '_frames']:.0f}/{stalled[n + '_frames']:.0f}" for n in CAMERAS)
    lines += [
        f"| results per camera in the paced runs (healthy / stalled) | {counts} |",
        f"| agent process RSS, 1 stream / 4 streams MiB | {rss1:.0f} / {rss4:.0f} |",
        "",
        "Method: throughput counts results at the agent's observer from the first to the last; the single agents' "
        "results are their events on a local mosquitto, counted while all four were producing. Paced runs skip "
        "each stream's first 2 s. The stalled camera opens and then never delivers: its reads hang until the stall "
        "watchdog (stall_s 0.5) reconnects it, over and over.",
        "",
    ]
    doc = {"machine": head, "load_at_start": head["load"], "load_at_end": list(load_at_end), "args": vars(args),
           "throughput": fig, "singles": singles, "paced_healthy": healthy, "paced_stalled": stalled,
           "rss_mib": {"1": rss1, "4": rss4}, "verdicts": verdicts}
    write_results("streams", doc, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
