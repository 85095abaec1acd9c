"""Control-plane scale: one Mosquitto, `edgeferry fleet serve` (one or two workers) and `edgeferry sim` devices.

Cases: 1,000 devices at 1 telemetry message/s and 10,000 at one every 10 s, each with one worker on SQLite and with
two workers on PostgreSQL (shared subscriptions split telemetry). Reported: registry staleness (now minus the
registry's last_seen of each device, sampled every second after a warm-up; target p99 < 2 s), control-plane CPU
(percent of one core, summed over workers) and peak RSS. Results to bench/results/fleet.{md,json}.

    python -m bench.bench_fleet            # full run (several minutes)
    python -m bench.bench_fleet --quick    # 200 devices, short windows: checks that it works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from fleet.db.store import FleetStore
from shared.percentiles import percentiles
from tests.fixtures.ports import free_port, wait_port

RESULTS = Path(__file__).parent / "results"
STALENESS_TARGET_S = 2.0
EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]


@dataclass
class Case:
    """One load: devices, rate per device, workers."""

    devices: int
    rate_hz: float
    workers: int
    measure_s: float
    warmup_s: float


@dataclass
class Outcome:
    """What one case measured."""

    devices: int
    rate_hz: float
    workers: int
    database: str
    messages_per_s: float
    registered: int
    staleness_p50_s: float | None
    staleness_p99_s: float | None
    cpu_pct: float
    rss_mb: float
    sim_cpu_pct: float
    met: bool
    note: str = ""


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                    "max_queued_messages 10000\nmax_inflight_messages 100\npersistence false\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_raise_nofile)
    wait_port(port, 10)
    return proc, port


def _worker(tmp: Path, name: str, port: int, url: str) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(json.dumps({"fleet": "bench", "broker": {"host": "127.0.0.1", "port": port},
                               "database": {"url": url}, "lease": {"worker_id": name}, "log_level": "WARNING"}))
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child, closed with the case's tmp dir
    return subprocess.Popen([*EDGEFERRY, "fleet", "serve", "--config", str(cfg)], stdout=log, stderr=log,
                            preexec_fn=_raise_nofile)


def _sim(tmp: Path, port: int, case: Case, duration: float) -> subprocess.Popen[bytes]:
    log = open(tmp / "sim.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([*EDGEFERRY, "sim", "--devices", str(case.devices), "--rate", str(case.rate_hz),
                             "--broker", f"127.0.0.1:{port}", "--fleet", "bench", "--duration", str(duration)],
                            stdout=log, stderr=log, preexec_fn=_raise_nofile)


def run_case(case: Case, pg_url: str | None) -> Outcome:
    """Start broker, workers and simulator; sample the registry; stop everything."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    url = pg_url if case.workers > 1 and pg_url else f"sqlite:///{tmp / 'fleet.sqlite'}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker, port = _mosquitto(tmp)
        procs.append(broker)
        workers = [_worker(tmp, f"w{i + 1}", port, url) for i in range(case.workers)]
        procs += workers
        time.sleep(3)
        connect_s = max(20.0, case.devices / 150)
        sim = _sim(tmp, port, case, connect_s + case.warmup_s + case.measure_s + 5)
        procs.append(sim)
        store = FleetStore.open(url, "bench")
        deadline = time.monotonic() + connect_s
        while time.monotonic() < deadline and len(store.list_devices()) < case.devices:
            time.sleep(1)
        time.sleep(case.warmup_s)
        ps = [psutil.Process(w.pid) for w in workers]
        sim_ps = psutil.Process(sim.pid)
        for p in (*ps, sim_ps):
            p.cpu_percent(None)
        staleness: list[float] = []
        rss = 0.0
        end = time.monotonic() + case.measure_s
        registered = 0
        while time.monotonic() < end:
            now = time.time() * 1000
            records = store.list_devices()
            registered = len(records)
            staleness += [(now - r.last_seen_ms) / 1000 for r in records if r.last_seen_ms]
            rss = max(rss, sum(p.memory_info().rss for p in ps) / 2**20)
            time.sleep(1)
        cpu = sum(p.cpu_percent(None) for p in ps)
        sim_cpu = sim_ps.cpu_percent(None)
        store.close()
        qs = percentiles(staleness, (50, 99)) if staleness else {}
        p50, p99 = qs.get(50), qs.get(99)
        met = p99 is not None and p99 < STALENESS_TARGET_S and registered == case.devices
        note = "" if registered == case.devices else f"only {registered} of {case.devices} devices registered"
        return Outcome(case.devices, case.rate_hz, case.workers, url.split(":")[0], case.devices * case.rate_hz,
                       registered, p50, p99, cpu, rss, sim_cpu, met, note)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def report(outcomes: list[Outcome], quick: bool, notes: list[str]) -> str:
    """Markdown table, also printed."""
    lines = [f"# Fleet control plane scale ({'quick' if quick else 'full'} run)", "",
             f"Machine: {json.dumps(machine())}", "",
             "| devices | rate/device | msgs/s | workers | db | registered | staleness p50 s | p99 s | target p99<2 s"
             " | fleet CPU % | fleet RSS MiB | sim CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.devices} | {o.rate_hz:g} Hz | {o.messages_per_s:.0f} | {o.workers} | {o.database} | "
                     f"{o.registered} | {_fmt(o.staleness_p50_s)} | {_fmt(o.staleness_p99_s)} | "
                     f"{'met' if o.met else 'NOT met'} | {o.cpu_pct:.0f} | {o.rss_mb:.0f} | {o.sim_cpu_pct:.0f} |")
    lines += ["", "CPU is percent of one core (2 cores = 200 %); the simulator shares the same cores.", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the cases, print the table, write bench/results/fleet.{md,json}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 devices, short windows")
    args = ap.parse_args()
    _raise_nofile()
    if args.quick:
        cases = [Case(200, 1.0, 1, 8, 3), Case(200, 1.0, 2, 8, 3)]
    else:
        cases = [Case(1000, 1.0, 1, 30, 10), Case(10_000, 0.1, 1, 40, 20),
                 Case(1000, 1.0, 2, 30, 10), Case(10_000, 0.1, 2, 40, 20)]
    notes = ["", "Time for a 3-stage rollout to decide: not measured by this benchmark yet (it needs the rollout "
             "controller driven end to end against the simulator; see the rollout e2e tests)."]
    pg = None
    if any(c.workers > 1 for c in cases):
        from tests.fixtures.postgres import PostgresServer

        pg = PostgresServer()
    outcomes = []
    try:
        for case in cases:
            url = pg.url(pg.create_database()) if pg is not None and case.workers > 1 else None
            o = run_case(case, url)
            outcomes.append(o)
            print(f"{o.devices} devices @ {o.rate_hz:g} Hz, {o.workers} worker(s): staleness p50 "
                  f"{_fmt(o.staleness_p50_s)} s p99 {_fmt(o.staleness_p99_s)} s ({'met' if o.met else 'NOT met'}), "
                  f"CPU {o.cpu_pct:.0f} %, RSS {o.rss_mb:.0f} MiB {o.note}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    text = report(outcomes, args.quick, notes)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"fleet{suffix}.md").write_text(text)
    (RESULTS / f"fleet{suffix}.json").write_text(json.dumps(
        {"machine": machine(), "quick": args.quick, "target_staleness_p99_s": STALENESS_TARGET_S,
         "cases": [asdict(o) for o in outcomes]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
