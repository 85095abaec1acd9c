"""How OpenVINO should run several streams' frames (issue 16 §2), measured in interleaved rounds on this machine:

1. batch-1 latency of the static batch-1 compile (one source) against the dynamic batch axis (streams batched),
   on the digits and reference packages' files: what a lone frame loses when the model keeps its batch axis;
2. four preprocessed frames bare: one batched call ('batch') against four async infer requests in flight
   ('async') against four batch-1 calls one after the other;
3. the 4-camera agent of bench/bench_streams.py (unpaced, every frame) in each streams_mode, rounds alternating.

Prints a Markdown block (with `uptime` before and after) for bench/results/streams.md's OpenVINO section.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.bench_edge import make_video, start_broker
from bench.bench_streams import FRAME_HW, throughput
from bench.machine import machine, machine_line, uptime
from edge.backends.openvino_backend import OpenVINOBackend, OvModel
from edge.config import OpenVINOConfig
from shared.manifest import Variant, parse_latest, parse_manifest
from shared.object_store import LocalStore


def load(store: Path, package: str, precision: str, cache: Path, max_batch: int, mode: str, threads: int
         ) -> tuple[OvModel, tuple[int, ...]]:
    """The package's file of this precision on OpenVINO, compiled as an agent with max_batch frames would."""
    latest = parse_latest(LocalStore(store).get(f"models/{package}/latest.json"))
    folder = store / "models" / package / str(latest.version)
    manifest = parse_manifest((folder / "manifest.json").read_bytes())
    variant: Variant = next(v for v in manifest.variants if v.precision == precision)
    cfg = OpenVINOConfig(threads=threads, cache_dir=cache, streams_mode=mode)  # type: ignore[arg-type]
    model = OpenVINOBackend(cfg, max_batch=max_batch).load(folder / variant.file, variant, manifest)
    assert isinstance(model, OvModel)
    shape = tuple(int(d) if isinstance(d, int) else 1 for d in model.input_shape)
    return model, shape


def rounds(fns: dict[str, Callable[[], object]], calls: int, n_rounds: int) -> dict[str, float]:
    """Median over rounds of each function's median call time (ms); the functions alternate round by round."""
    for f in fns.values():
        for _ in range(max(1, calls // 10)):
            f()
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n_rounds):
        for k, f in fns.items():
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            per[k].append(statistics.median(times) * 1e3)
    return {k: statistics.median(v) for k, v in per.items()}


def shape_row(args: argparse.Namespace, cache: Path, package: str, precision: str) -> str:
    static, shape = load(args.store, package, precision, cache, 1, "batch", args.threads)
    dynamic, _ = load(args.store, package, precision, cache, 4, "batch", args.threads)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    got = rounds({"static": lambda: static.run(x), "dynamic": lambda: dynamic.run(x)},
                 2000 if package == "digits" else 60, args.rounds)
    static.close()
    dynamic.close()
    return (f"| {package} {precision} | {got['static']:.4f} | {got['dynamic']:.4f} | "
            f"{got['dynamic'] / got['static']:.2f}x |")


def four_row(args: argparse.Namespace, cache: Path, package: str, precision: str) -> str:
    batched, shape = load(args.store, package, precision, cache, 4, "batch", args.threads)
    in_flight, _ = load(args.store, package, precision, cache, 4, "async", args.threads)
    single, _ = load(args.store, package, precision, cache, 1, "batch", args.threads)
    rng = np.random.default_rng(1)
    xs = [rng.random(shape, dtype=np.float32) for _ in range(4)]
    stacked = np.concatenate(xs)
    got = rounds({"batch": lambda: batched.run(stacked), "async": lambda: in_flight.run_each(xs),
                  "seq": lambda: [single.run(x) for x in xs]}, 500 if package == "digits" else 20, args.rounds)
    for m in (batched, in_flight, single):
        m.close()
    return f"| {package} {precision} | {got['batch']:.3f} | {got['async']:.3f} | {got['seq']:.3f} |"


def table(head: list[str], row: Callable[[argparse.Namespace, Path, str, str], str], args: argparse.Namespace,
          cache: Path) -> list[str]:
    rows = list(head)
    for package in ("digits", "reference"):
        for precision in ("fp32", "int8"):
            rows.append(row(args, cache, package, precision))
            print(rows[-1], flush=True)
    return rows


SHAPES_HEAD = ["| package precision | static batch 1 ms | dynamic axis, batch 1 ms | dynamic / static |",
               "|---|---:|---:|---:|"]
FOUR_HEAD = ["| package precision | 1 batched call (batch) ms | 4 async requests (async) ms | 4 batch-1 calls ms |",
             "|---|---:|---:|---:|"]


def agents(args: argparse.Namespace, tmp: Path) -> list[str]:
    video = tmp / "camera.avi"
    make_video(video, args.frames, FRAME_HW)
    broker, port = start_broker(tmp)
    rows = ["| round | streams_mode | agent fps | bare 4 frames together fps | agent / bare | agent CPU ms/frame |",
            "|---:|---|---:|---:|---:|---:|"]
    try:
        for r in range(args.agent_rounds):
            for mode in ("batch", "async"):
                ns = argparse.Namespace(
                    store=args.store, key=args.key, package="reference", version=args.version, variant=args.variant,
                    runtime="openvino", threads=args.threads, spin="on", ov_mode=mode, budget_ms=60.0,
                    frames=args.frames)
                fig = throughput(ns, tmp / f"{mode}-{r}", video, port)
                rows.append(f"| {r + 1} | {mode} | {fig['agent_fps']:.1f} | {fig['bare_batched_fps']:.1f} | "
                            f"{fig['agent_fps'] / fig['bare_batched_fps']:.2f}x | {fig['agent_cpu_ms']:.2f} |")
                print(rows[-1], flush=True)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"))
    ap.add_argument("--variant", default="int8", help="Variant the agents serve.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="Interleaved rounds of the bare comparisons.")
    ap.add_argument("--agent-rounds", type=int, default=2, help="Rounds of the two agents (0: skip).")
    ap.add_argument("--frames", type=int, default=100, help="Frames per camera in each agent run.")
    ap.add_argument("--parts", default="shapes,four,agents")
    args = ap.parse_args()
    args.version = parse_latest(LocalStore(args.store).get("models/reference/latest.json")).version
    parts = args.parts.split(",")
    out = [machine_line(machine()), "", f"Load: `{uptime()}` before."]
    with tempfile.TemporaryDirectory(prefix="edgeferry-ov-streams-") as t:
        tmp = Path(t)
        if "shapes" in parts:
            out += ["", "Batch-1 latency (median of interleaved rounds):", "",
                    *table(SHAPES_HEAD, shape_row, args, tmp / "ov")]
        if "four" in parts:
            out += ["", "Four frames, bare (median of interleaved rounds):", "",
                    *table(FOUR_HEAD, four_row, args, tmp / "ov")]
        if "agents" in parts and args.agent_rounds:
            out += ["", f"4-camera agent, unpaced, {args.frames} frames per camera, reference {args.variant}:", "",
                    *agents(args, tmp)]
    out += ["", f"Load: `{uptime()}` after."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
