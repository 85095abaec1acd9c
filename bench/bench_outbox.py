"""Per-message cost of Outbox.put() (telemetry-sized payloads), by producer threads and synchronous mode.

A small measurement, not a test: run it before and after a change to the outbox's write path and compare the
rows of one machine. `python -m bench.bench_outbox [--messages N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from bench.machine import machine, machine_line
from edge.link.outbox import Outbox, Synchronous

PAYLOAD = b"x" * 1500  # a telemetry report with every declared figure


def per_message_us(threads: int, messages: int, synchronous: Synchronous) -> tuple[float, int]:
    """Wall time per message with `threads` producers putting `messages` in all, and messages lost (must be 0)."""
    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "q.sqlite", 10 * messages, synchronous) as box:
        each = messages // threads
        start = threading.Barrier(threads + 1)

        def produce() -> None:
            start.wait()
            for _ in range(each):
                box.put("edgeferry/lab/cam-1/telemetry", PAYLOAD)

        workers = [threading.Thread(target=produce) for _ in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        return elapsed / (each * threads) * 1e6, each * threads - box.depth()


def main() -> None:
    """Print one row per (synchronous, threads)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000, help="messages per row")
    args = parser.parse_args()
    print(machine_line(machine()))  # rows compare only on one machine under like load
    print(f"{'synchronous':<12}{'threads':>8}{'us/message':>12}{'lost':>6}")
    modes: tuple[Synchronous, ...] = ("normal", "full")
    for synchronous in modes:
        n = args.messages if synchronous == "normal" else args.messages // 4
        for threads in (1, 2, 4, 8):
            us, lost = per_message_us(threads, n, synchronous)
            print(f"{synchronous:<12}{threads:>8}{us:>12.1f}{lost:>6}")


if __name__ == "__main__":
    main()
