"""Control-plane ingest at scale: one Mosquitto, `edgeferry fleet serve` (or the plain paho + SQLite subscriber the
issue compares it with), and the independent load generator (tests/fixtures/loadgen.py: one process, raw sockets,
QoS 1, an agent's telemetry report) on the same machine.

Per case: messages per second stored in the measured window; staleness at the device's own `ts` (now minus the
newest `ts` the database holds for a device, 200 random devices every second; for fleet serve read from the history,
which is written after the registry, so it bounds the registry's staleness from above); the registry's staleness by
receive time; CPU per message of the subscriber (its CPU seconds over the messages it stored in the window) and of
the broker and the generator; peak RSS; messages sent, acknowledged by the broker, and stored after a drain.
Results to bench/results/fleet.{md,json}, with the load average of the machine beside each row, and the analysis
in bench/fleet_notes.md below the table.

    python -m bench.bench_fleet            # full run (about 10 minutes)
    python -m bench.bench_fleet --quick    # 1,000 devices, short windows: checks that it works
    python -m bench.bench_fleet --quick --cases plain,sqlite --streams 4   # each report carries 4 streams' figures
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text

from bench.machine import machine, machine_line
from fleet.sim.streams import StreamsSim
from shared.percentiles import percentiles
from tests.fixtures.loadgen import TEMPLATE
from tests.fixtures.ports import free_port, wait_port

RESULTS = Path(__file__).parent / "results"
STALENESS_TARGET_S = 2.0
RATE_TARGET = 10_000
RSS_TARGET_MIB = 250
CPU_RATIO_TARGET = 1.5
EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]
SAMPLED_DEVICES = 200
# The analysis of the latest full run (what is met, where the limit is), kept beside the generated table.
NOTES = Path(__file__).with_name("fleet_notes.md")


@dataclass
class Case:
    """One load: devices, rate per device, subscriber, database, workers, windows."""

    devices: int
    rate_hz: float
    subscriber: str  # "fleet" or "plain"
    database: str  # "sqlite" or "postgresql"
    workers: int
    warmup_s: float
    measure_s: float
    # Streams whose per-stream figures each report carries (a multi-stream agent's `streams`); 0: single stream.
    streams: int = 0


@dataclass
class Outcome:
    """What one case measured."""

    subscriber: str
    database: str
    workers: int
    devices: int
    offered_per_s: float
    stored_per_s: float
    staleness_ts_p50_s: float | None
    staleness_ts_p99_s: float | None
    staleness_received_p99_s: float | None
    cpu_us_per_msg: float | None
    cpu_pct: float
    broker_cpu_pct: float
    loadgen_cpu_pct: float
    rss_mib: float
    sent: int
    acked: int
    stored: int
    load_avg: tuple[float, float, float]
    note: str = ""
    # Messages the worker's queue shed (counted on each device's record): received, acknowledged, never stored.
    shed: int = 0
    # Streams per report (0: a single-stream agent's report, the captured template as it is).
    streams: int = 0


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    # A subscriber that falls behind must not lose messages at the broker: a deep queue, a wide in-flight window.
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n"
                    "max_queued_messages 2000000\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_raise_nofile)
    wait_port(port, 10)
    return proc, port


def _worker(tmp: Path, name: str, port: int, url: str) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(json.dumps({"fleet": "bench", "broker": {"host": "127.0.0.1", "port": port},
                               "database": {"url": url}, "lease": {"worker_id": name}, "log_level": "WARNING",
                               "ingest": {"max_queue_messages": 200_000},
                               "registry": {"max_unassigned_devices": 1_000_000}}))
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child, closed with the case's tmp dir
    # --no-web: the ingest alone (the web app subscribes to telemetry too, for its live figures).
    return subprocess.Popen([*EDGEFERRY, "fleet", "serve", "--no-web", "--config", str(cfg)], stdout=log, stderr=log,
                            preexec_fn=_raise_nofile)


def _plain(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(tmp / "plain.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([sys.executable, "-m", "bench.plain_subscriber", "--broker", f"127.0.0.1:{port}",
                             "--db", str(tmp / "plain.sqlite")], stdout=log, stderr=log)


def stream_report(streams: int) -> dict[str, Any]:
    """The captured agent report with `streams` streams' figures (as a multi-stream agent sends them), or as it is."""
    doc: dict[str, Any] = json.loads(TEMPLATE.read_text())
    if streams:
        sim = StreamsSim(streams, seed="bench")
        sim.tick(10.0)
        doc["streams"] = sim.tick(10.0)
    return doc


def _loadgen(tmp: Path, port: int, case: Case, duration: float) -> subprocess.Popen[bytes]:
    log = open(tmp / "loadgen.log", "wb")  # noqa: SIM115 - handed to the child
    payload = tmp / "report.json"
    payload.write_text(json.dumps(stream_report(case.streams)))
    return subprocess.Popen([sys.executable, "-m", "tests.fixtures.loadgen", "--broker", f"127.0.0.1:{port}",
                             "--fleet", "bench", "--devices", str(case.devices), "--rate", str(case.rate_hz),
                             "--duration", str(duration), "--out", str(tmp / "loadgen.json"),
                             "--payload", str(payload)],
                            stdout=log, stderr=log, preexec_fn=_raise_nofile)


class _Reader:
    """Read-only queries on the subscriber's database: stored count and per-device newest ts / last seen."""

    def __init__(self, case: Case, url: str) -> None:
        self.engine = create_engine(url)
        self.plain = case.subscriber == "plain"

    def stored(self) -> int:
        table = "samples" if self.plain else "telemetry_samples"
        with self.engine.connect() as conn:
            try:
                return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            except Exception:  # noqa: BLE001 - the table may not exist yet
                return 0

    def shed(self) -> int:
        if self.plain:
            return 0
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT coalesce(sum(shed), 0) FROM devices WHERE fleet = 'bench'"))
                       .scalar_one())

    def staleness(self, devices: list[str], now_ms: float) -> tuple[list[float], list[float]]:
        by_ts, by_received = [], []
        with self.engine.connect() as conn:
            for d in devices:
                if self.plain:
                    row = conn.execute(text("SELECT last_ts_ms, last_seen_ms FROM devices WHERE device_id = :d"),
                                       {"d": d}).first()
                    ts, seen = (row[0], row[1]) if row else (None, None)
                else:
                    ts = conn.execute(text("SELECT max(ts_ms) FROM telemetry_samples WHERE fleet = 'bench' "
                                           "AND device_id = :d"), {"d": d}).scalar()
                    seen = conn.execute(text("SELECT last_seen_ms FROM devices WHERE fleet = 'bench' "
                                             "AND device_id = :d"), {"d": d}).scalar()
                if ts is not None:
                    by_ts.append((now_ms - ts) / 1000)
                if seen is not None:
                    by_received.append((now_ms - seen) / 1000)
        return by_ts, by_received


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_case(case: Case, pg_url: str | None) -> Outcome:
    """Start broker, subscriber and load generator; measure; stop everything."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    if case.subscriber == "plain":
        url = f"sqlite:///{tmp / 'plain.sqlite'}"
    else:
        url = pg_url if case.database == "postgresql" and pg_url else f"sqlite:///{tmp / 'fleet.sqlite'}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker, port = _mosquitto(tmp)
        procs.append(broker)
        subs = ([_plain(tmp, port)] if case.subscriber == "plain"
                else [_worker(tmp, f"w{i + 1}", port, url) for i in range(case.workers)])
        procs += subs
        time.sleep(4)
        gen = _loadgen(tmp, port, case, case.warmup_s + case.measure_s)
        procs.append(gen)
        reader = _Reader(case, url)
        time.sleep(case.warmup_s)
        sub_ps = [psutil.Process(p.pid) for p in subs]
        broker_ps, gen_ps = psutil.Process(broker.pid), psutil.Process(gen.pid)
        cpu0, bcpu0, gcpu0 = _cpu(sub_ps), _cpu([broker_ps]), _cpu([gen_ps])
        stored0, t0 = reader.stored(), time.monotonic()
        by_ts: list[float] = []
        by_received: list[float] = []
        rss = 0.0
        devices = [f"dev-{i:06d}" for i in range(case.devices)]
        while time.monotonic() - t0 < case.measure_s:
            a, b = reader.staleness(random.sample(devices, min(SAMPLED_DEVICES, len(devices))), time.time() * 1000)
            by_ts += a
            by_received += b
            rss = max(rss, sum(p.memory_info().rss for p in sub_ps) / 2**20)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        window = time.monotonic() - t0
        stored1 = reader.stored()
        cpu, bcpu, gcpu = _cpu(sub_ps) - cpu0, _cpu([broker_ps]) - bcpu0, _cpu([gen_ps]) - gcpu0
        load = os.getloadavg()
        gen.wait(120)
        counts = json.loads((tmp / "loadgen.json").read_text()) if (tmp / "loadgen.json").exists() else {}
        sent, acked = int(counts.get("sent", 0)), int(counts.get("acked", 0))
        deadline = time.monotonic() + 60
        stored = reader.stored()
        while stored < sent and time.monotonic() < deadline:
            time.sleep(1)
            stored = reader.stored()
        shed = reader.shed()
        reader.engine.dispose()
        done = stored1 - stored0
        ts_q = percentiles(by_ts, (50, 99)) if by_ts else {}
        rec_q = percentiles(by_received, (99,)) if by_received else {}
        note = "" if stored == sent else f"{sent - stored} of {sent} not stored 60 s after the load ended"
        return Outcome(case.subscriber, case.database, case.workers, case.devices, case.devices * case.rate_hz,
                       done / window, ts_q.get(50), ts_q.get(99), rec_q.get(99),
                       cpu / done * 1e6 if done else None, cpu / window * 100, bcpu / window * 100,
                       gcpu / window * 100, rss, sent, acked, stored,
                       (round(load[0], 2), round(load[1], 2), round(load[2], 2)), note, shed, case.streams)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def fleet_machine() -> dict[str, Any]:
    """bench.machine's facts and the open-files limit (every simulated device holds a socket)."""
    return {**machine(), "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def verdicts(o: Outcome, plain: Outcome | None) -> list[str]:
    """Each target of issue 17 this row meets or misses."""
    out = []
    if o.subscriber == "fleet":
        out.append(f"rate {'met' if o.stored_per_s >= 0.95 * RATE_TARGET else 'missed'}")
        out.append(f"p99<2s {'met' if o.staleness_ts_p99_s is not None and o.staleness_ts_p99_s < 2 else 'missed'}")
        out.append(f"RSS {'met' if o.rss_mib < RSS_TARGET_MIB else 'missed'}")
        if plain is not None and plain.cpu_us_per_msg and o.cpu_us_per_msg:
            ratio = o.cpu_us_per_msg / plain.cpu_us_per_msg
            out.append(f"CPU x{ratio:.1f} {'met' if ratio <= CPU_RATIO_TARGET else 'missed'}")
    out.append(f"broker acked {o.acked}/{o.sent}")
    if o.shed:
        out.append(f"{o.shed} shed by the worker's full queue (counted per device, not stored)")
    if o.stored + o.shed < o.sent:
        out.append(f"{o.sent - o.stored - o.shed} still queued 60 s after the load (broker or worker)")
    return out


def report(outcomes: list[Outcome], quick: bool, notes: list[str], box: dict[str, Any]) -> str:
    """Markdown table, also printed; box: the machine the run recorded (fleet_machine())."""
    plain = next((o for o in outcomes if o.subscriber == "plain"), None)
    lines = [f"# Fleet ingest at scale ({'quick' if quick else 'full'} run)", "",
             f"{machine_line(box)}; open files limit {box.get('nofile_hard', 'not recorded')}", "",
             "| subscriber | db | workers | devices | streams | offered msg/s | stored msg/s | "
             "staleness at ts p50 / p99 s | registry by receive p99 s | CPU us/msg | subscriber CPU % | "
             "broker CPU % | loadgen CPU % | RSS MiB | "
             "sent / acked / stored / shed | load avg 1/5/15 | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(
            f"| {o.subscriber} | {o.database} | {o.workers} | {o.devices} | {o.streams} | {o.offered_per_s:.0f} | "
            f"{o.stored_per_s:.0f} | {_fmt(o.staleness_ts_p50_s)} / {_fmt(o.staleness_ts_p99_s)} | "
            f"{_fmt(o.staleness_received_p99_s)} | {_fmt(o.cpu_us_per_msg, 0)} | {o.cpu_pct:.0f} | "
            f"{o.broker_cpu_pct:.0f} | {o.loadgen_cpu_pct:.0f} | {o.rss_mib:.0f} | "
            f"{o.sent} / {o.acked} / {o.stored} / {o.shed} | {' / '.join(f'{x:.1f}' for x in o.load_avg)} | "
            f"{'; '.join(verdicts(o, plain))} |")
    lines += ["", "CPU % is percent of one core (2 cores = 200 %); broker, generator and subscriber share the "
              "machine (and, during this run, other work: see the load average).", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the cases, print the table, write bench/results/fleet.{md,json}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 devices, short windows")
    ap.add_argument("--cases", default="", help="comma-separated subset: plain,sqlite,postgresql,pg2,100k")
    ap.add_argument("--streams", type=int, default=0,
                    help="each report carries this many streams' per-stream figures (a multi-stream agent's "
                    "telemetry); results go to fleet[-quick]-streamsN.{md,json}")
    ap.add_argument("--render", action="store_true",
                    help="only write fleet.md again from fleet.json and bench/fleet_notes.md (after editing the notes)")
    args = ap.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "fleet.json").read_text())
        kept = [Outcome(**{**c, "load_avg": tuple(c["load_avg"])}) for c in saved["cases"]]
        (RESULTS / "fleet.md").write_text(report(kept, False, ["", NOTES.read_text()] if NOTES.exists() else [],
                                                  saved["machine"]))
        return
    _raise_nofile()
    if args.quick:
        all_cases = {"plain": Case(1000, 1.0, "plain", "sqlite", 1, 4, 8),
                     "sqlite": Case(1000, 1.0, "fleet", "sqlite", 1, 4, 8),
                     "postgresql": Case(1000, 1.0, "fleet", "postgresql", 1, 4, 8)}
    else:
        all_cases = {"plain": Case(10_000, 1.0, "plain", "sqlite", 1, 15, 30),
                     "sqlite": Case(10_000, 1.0, "fleet", "sqlite", 1, 15, 30),
                     "postgresql": Case(10_000, 1.0, "fleet", "postgresql", 1, 15, 30),
                     "pg2": Case(10_000, 1.0, "fleet", "postgresql", 2, 15, 30),
                     "100k": Case(100_000, 0.1, "fleet", "sqlite", 1, 25, 30)}
    chosen = [c for c in args.cases.split(",") if c] or list(all_cases)
    cases = [replace(all_cases[c], streams=args.streams) for c in chosen]
    pg = None
    if any(c.database == "postgresql" for c in cases):
        from tests.fixtures.postgres import PostgresServer

        pg = PostgresServer()
    outcomes = []
    try:
        for case in cases:
            url = pg.url(pg.create_database()) if pg is not None and case.database == "postgresql" else None
            o = run_case(case, url)
            outcomes.append(o)
            print(json.dumps(asdict(o)), flush=True)
    finally:
        if pg is not None:
            pg.stop()
    notes = ["", NOTES.read_text()] if NOTES.exists() and not args.quick else []
    box = fleet_machine()
    text_md = report(outcomes, args.quick, notes, box)
    print(text_md)
    RESULTS.mkdir(exist_ok=True)
    suffix = ("-quick" if args.quick else "") + (f"-streams{args.streams}" if args.streams else "")
    (RESULTS / f"fleet{suffix}.json").write_text(json.dumps(
        {"machine": box, "quick": args.quick, "targets": {
            "rate_msg_s": RATE_TARGET, "staleness_p99_s": STALENESS_TARGET_S, "rss_mib": RSS_TARGET_MIB,
            "cpu_ratio_to_plain": CPU_RATIO_TARGET}, "cases": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    (RESULTS / f"fleet{suffix}.md").write_text(text_md)


if __name__ == "__main__":
    main()
