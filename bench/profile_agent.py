"""py-spy on a running `edgeferry agent` serving one paced camera: where its CPU time goes, per thread and function.

Starts a loopback Mosquitto and the agent process on a looping 640x480 MJPG file paced like a camera, lets it
settle, records it with py-spy (raw collapsed stacks, thread names kept) and prints the share of samples per
thread and the functions that hold the most samples. `--pythonpath DIR` runs another tree's edge/ (e.g. an
export of the commit before a change) under the same conditions, for a before/after pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.bench_edge import FRAME_HW, make_video, start_broker
from shared.manifest import parse_latest
from shared.object_store import LocalStore

# Seconds recorded only after the model serves and this much time more, and the longest wait for it to serve.
SETTLE_S = 5.0
SERVE_TIMEOUT_S = 300.0
# Leaf frames of a thread parked in a wait (py-spy samples some of them; they cost no CPU); _worker: an idle
# thread pool worker blocked in its queue's get.
IDLE_LEAVES = ("wait", "sleep", "select", "Queue.get", "Client._loop", "_worker")


def agent_config(tmp: Path, args: argparse.Namespace, video: Path, port: int | None) -> dict[str, object]:
    """One paced camera-like stream, every result an MQTT event in the durable outbox."""
    version = parse_latest(LocalStore(args.store).get(f"models/{args.package}/latest.json")).version
    return {
        "device": {"fleet": "bench", "device_id": f"profile-{args.package}"},
        "sync": {"model": args.package, "store": {"uri": str(args.store.resolve())},
                 "cache_dir": str(tmp / "cache"), "trusted_keys": [str(args.key.resolve())],
                 "poll_interval_s": 3600, "benchmark_on_install": True, "pinned_version": version},
        "source": {"type": "video_file", "path": str(video), "loop": True, "policy": "latest", "queue_size": 2,
                   "max_fps": args.fps},
        "backend": ({"type": "auto", "threads": args.threads, "openvino": {"cache_dir": str(tmp / "ov-cache")}}
                    if args.runtime == "auto" else {"type": args.runtime, "threads": args.threads}),
        "events": {"mode": "every"},
        "mqtt": {"enabled": port is not None, "port": port or 1883, "telemetry_interval_s": 1.0,
                 "outbox_path": str(tmp / "outbox.sqlite"), "outbox_max_messages": 100_000},
    }


def summarize(raw: Path, top: int) -> str:
    """Samples per thread and per function (inclusive, and where the sample was taken) from py-spy's raw output."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if any(w in frames[-1].split(" (")[0] for w in IDLE_LEAVES):
            idle += n  # a thread parked in a wait: no CPU spent
            continue
        total += n
        threads[frames[0]] += n
        for f in set(frames[1:]):
            inclusive[f.split(" (")[0]] += n
        leaf[frames[-1].split(" (")[0]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples on CPU ({idle} more in waits left out)", "", "| thread | share |", "|---|---:|"]
    lines += [f"| {t} | {100 * n / total:.1f} % |" for t, n in threads.most_common(top)]
    lines += ["", "| function (inclusive) | share |", "|---|---:|"]
    lines += [f"| {f} | {100 * n / total:.1f} % |" for f, n in inclusive.most_common(top)]
    lines += ["", "| function (on CPU, leaf) | share |", "|---|---:|"]
    lines += [f"| {f} | {100 * n / total:.1f} % |" for f, n in leaf.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    """Run the agent, record it, print the summary."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", default="digits")
    ap.add_argument("--store", type=Path, default=Path(".store"))
    ap.add_argument("--trusted-key", dest="key", type=Path, default=Path(".keys/edgeferry.pub"))
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runtime", default="auto", choices=("auto", "onnxruntime", "openvino"),
                    help="Force a runtime, so a before/after pair serves the same one (auto: chosen by measurement).")
    ap.add_argument("--duration", type=float, default=20.0, help="Seconds recorded.")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second.")
    ap.add_argument("--pythonpath", type=Path, help="Put this tree's packages first (a before/after comparison).")
    ap.add_argument("--out", type=Path, required=True, help="Where the raw py-spy stacks go.")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="edgeferry-profile-") as t:
        tmp = Path(t)
        broker, port = start_broker(tmp)
        video = tmp / "camera.avi"
        make_video(video, 300, FRAME_HW)
        config = tmp / "agent.yaml"
        config.write_text(json.dumps(agent_config(tmp, args, video, port)))
        env = dict(os.environ)
        cwd = None
        if args.pythonpath is not None:  # `python -m` puts the working directory first on sys.path
            cwd = args.pythonpath.resolve()
            env["PYTHONPATH"] = f"{cwd}{os.pathsep}{Path.cwd()}"
        log = tmp / "agent.log"
        with log.open("wb") as err:
            agent = subprocess.Popen([sys.executable, "-m", "edgeferry.cli", "agent", "--config", str(config)],
                                     env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            # Record only once the model serves: install-time runtime measurement is not the frame path.
            deadline = time.monotonic() + SERVE_TIMEOUT_S
            while not any(w in log.read_text(errors="replace") for w in ("activated ", "serving ")):
                if agent.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(SETTLE_S)
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited {agent.returncode} before it could be recorded")
            subprocess.run([pyspy, "record", "-p", str(agent.pid), "-d", str(int(args.duration)), "-r",
                            str(args.rate), "-f", "raw", "--threads", "-o", str(args.out)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=10)
    print(summarize(args.out, args.top))


if __name__ == "__main__":
    main()
