"""The fleet page at scale: simulated devices, `fleet serve` with the web app, Debian's chromium (headless).

Reports the first load of the fleet page (navigation start of the page the sign-in lands on until its summary and
first page of devices, worst first, are on screen: the page's `fleet-loaded` performance mark), a reload, the
server's answer time for the shared summary and one page, and the browser's CPU while live updates stream in
(main-thread busy time from CDP `Performance.getMetrics` TaskDuration per wall second, and every chromium process
by psutil). Targets (issue 17 section 4): first load < 1 s at 1,000 devices and < 2 s at 10,000; browser main
thread < 50 % of one core. Devices publish min(1, 1000 / devices) telemetry messages per second each, so both
cases put the same 1,000 msg/s on the ingest (whose own limits bench_fleet measures) and this one measures the
page. `make bench-dashboard` (QUICK=1: 200 devices, shorter, nothing written).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import sync_playwright

from bench.machine import machine, machine_line
from dashboards.web.config import WebConfig
from dashboards.web.passwords import hash_password, hash_token
from tests.fixtures.ports import free_port, wait_port

EDGEFERRY = [str(Path(sys.executable).with_name("edgeferry"))]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
USER, PASSWORD, TOKEN = "bench", "bench-password", "bench-token-0123456789abcdef"
CPU_TARGET_PCT = 50.0
RESULTS = Path(__file__).parent / "results" / "dashboard.md"
RESULTS_JSON = RESULTS.with_suffix(".json")
FLEET_MSG_PER_S = 1000.0  # every case: this many telemetry messages per second over the whole fleet


def first_load_target_s(devices: int) -> float:
    """Issue 17: < 1 s up to 1,000 devices, < 2 s at 10,000."""
    return 1.0 if devices <= 1000 else 2.0


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _spawn(tmp: Path, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child, removed with the tmp dir
    return subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=_raise_nofile)


def _get(web_port: int, path: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{web_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _devices(web_port: int) -> int:
    return int(_get(web_port, "/api/fleet/summary")["total"])


def _tick_s(web_port: int, ticks: int = 6, limit_s: float = 90.0) -> float:
    """Median spacing of the live hub's ticks (the snapshot's generated_ms), as a page sees its figures move."""
    seen: list[int] = []
    end = time.monotonic() + limit_s
    while time.monotonic() < end and len(seen) < ticks:
        g = int(_get(web_port, "/api/fleet/summary")["generated_ms"])
        if not seen or g != seen[-1]:
            seen.append(g)
        time.sleep(0.2)
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(seen[1:])]  # the first gap may be partial
    return statistics.median(gaps) if gaps else float("nan")


def _answer_ms(web_port: int, path: str, n: int = 5) -> float:
    """Median wall time of the server's answer to one API read (what every browser asks for at load)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _get(web_port, path)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _chromium_cpu_s() -> float:
    """User + system CPU seconds of every chromium process under this one (browser, renderers, utilities)."""
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" not in p.name().lower():
                continue
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def run(devices: int, measure_s: float, interval_s: float, rate_hz: float) -> dict[str, Any]:
    """One measurement; every process it started is stopped before it returns."""
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: how busy it was before this case started
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mqtt_port, web_port = free_port(), free_port()
        (tmp / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
            "max_queued_messages 10000\nmax_inflight_messages 100\npersistence false\n")
        procs.append(_spawn(tmp, "mosquitto", ["mosquitto", "-c", str(tmp / "mosquitto.conf")]))
        wait_port(mqtt_port, 10)
        (tmp / "fleet.yaml").write_text(json.dumps({
            "fleet": "bench", "broker": {"host": "127.0.0.1", "port": mqtt_port},
            "database": {"url": f"sqlite:///{tmp / 'fleet.sqlite'}"}, "log_level": "WARNING"}))
        (tmp / "web.yaml").write_text(json.dumps({
            "port": web_port, "live_interval_s": interval_s,
            "users": [{"name": USER, "role": "viewer", "password_hash": hash_password(PASSWORD)}],
            "api_tokens": [{"name": "bench", "role": "viewer", "token_sha256": hash_token(TOKEN)}]}))
        procs.append(_spawn(tmp, "fleet", [*EDGEFERRY, "fleet", "serve", "--config", str(tmp / "fleet.yaml"),
                                           "--web-config", str(tmp / "web.yaml")]))
        wait_port(web_port, 60)
        procs.append(_spawn(tmp, "sim", [*EDGEFERRY, "sim", "--devices", str(devices), "--rate", f"{rate_hz:g}",
                                         "--broker", f"127.0.0.1:{mqtt_port}", "--fleet", "bench"]))
        deadline = time.monotonic() + max(60.0, devices / 20)
        seen = 0
        while time.monotonic() < deadline and (seen := _devices(web_port)) < devices:
            time.sleep(2)
        time.sleep(3)
        seen = _devices(web_port)
        summary_ms = _answer_ms(web_port, "/api/fleet/summary")
        page_ms = _answer_ms(web_port, "/api/fleet/devices?limit=100")
        base = f"http://127.0.0.1:{web_port}"
        loaded = "body[data-loaded='1']"  # a selector: the page's CSP refuses wait_for_function's eval
        mark = "performance.getEntriesByName('fleet-loaded')[0].startTime / 1000"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/login")
            page.fill("#username", USER)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            # The first load is the page the sign-in lands on (cold cache; timed from the sign-in's navigation).
            page.wait_for_selector(loaded, state="attached", timeout=60_000)
            loads = [float(page.evaluate(mark))]
            shown_text = page.inner_text("#shown")
            for _ in range(2):
                page.goto(f"{base}/")
                page.wait_for_selector(loaded, state="attached", timeout=60_000)
                loads.append(float(page.evaluate(mark)))
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def task_s() -> float:
                metrics = cdp.send("Performance.getMetrics")["metrics"]
                return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))

            t0, w0 = task_s(), time.monotonic()
            c0 = _chromium_cpu_s()
            page.wait_for_timeout(measure_s * 1000)
            t1, w1 = task_s(), time.monotonic()
            c1 = _chromium_cpu_s()
            rows = page.evaluate("document.querySelectorAll('#devices tbody tr').length")
            browser.close()
        tick_s = _tick_s(web_port)
        main_pct = 100 * (t1 - t0) / (w1 - w0)
        all_pct = 100 * (c1 - c0) / (w1 - w0)
        total_shown = int(shown_text.rsplit(" of ", 1)[1].split()[0])
        target = first_load_target_s(devices)
        return {"devices": devices, "rate_hz": rate_hz, "loadavg_before": load_before, "registered": seen,
                "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "total_shown": total_shown,
                "rows": rows, "first_load_s": loads[0], "reload_s": min(loads[1:]), "target_s": target,
                "summary_ms": summary_ms, "page_ms": page_ms, "tick_s": tick_s, "main_thread_pct": main_pct,
                "chromium_pct": all_pct,
                "measure_s": measure_s, "interval_s": interval_s,
                "load_met": loads[0] < target, "cpu_met": main_pct < CPU_TARGET_PCT,
                "met": loads[0] < target and main_pct < CPU_TARGET_PCT and total_shown == seen == devices}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: list[dict[str, Any]], box: dict[str, Any]) -> str:
    """Markdown table with the machine it ran on."""
    lines = [
        "# Fleet page at scale (bench/bench_dashboard.py)", "",
        machine_line(box, when="at the start"), "",
        "Broker, fleet serve, simulator and chromium share these cores.", "",
        f"Live batch every {results[0]['interval_s']:g} s; every case puts {FLEET_MSG_PER_S:g} telemetry messages/s "
        "on the ingest (1 Hz per device at 1,000, one message every 10 s at 10,000).", "",
        "| devices | msg/s per device | in summary | first load s (target) | reload s | summary / page answer ms | "
        "live tick s | "
        "browser main thread % of a core (target < 50) | all chromium % | load avg before | measured | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['devices']} | {r['rate_hz']:g} | {r['total_shown']} | {r['first_load_s']:.2f} (< {r['target_s']:g}"
            f"{', met' if r['load_met'] else ', MISSED'}) | {r['reload_s']:.2f} | {r['summary_ms']:.0f} / "
            f"{r['page_ms']:.0f} | {r.get('tick_s', float('nan')):.1f} | {r['main_thread_pct']:.1f} | "
            f"{r['chromium_pct']:.1f} | {r['loadavg_before']:g} | {r['measured_at']} | "
            f"{'yes' if r['met'] else 'NO'} |")
    lines += [
        "", "First load: navigation start of the page the sign-in lands on until the fleet summary and the first "
        "page of 100 devices (worst first) are on screen (the page's fleet-loaded performance mark); reload: the "
        "best of two more loads. The table is served from the snapshot the live hub builds once per tick, so the "
        "answer times do not grow with the number of browsers. CPU over "
        f"{results[0]['measure_s']:g} s of live updates: CDP Performance.getMetrics TaskDuration, and psutil over "
        "every chromium process. Live tick: median spacing of the snapshot's ticks (one per 1 s interval; a "
        "tick taking more than half of it is followed by as long a pause). What limits the tick at 10,000 devices "
        "is that the web app shares fleet serve's process, and its one interpreter lock, with the ingest: a tick "
        "re-reads only the devices whose registry row changed (about 0.15 ms each here), but a tick that runs "
        "behind finds most of them changed. It is "
        "not the page or the browser (the first load reads the last snapshot, so it stays within target while the "
        "tick lags). Load avg before: the 1-minute load average of this shared 2-core machine "
        "when the case started (other work ran alongside); the first load moves with it.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run and print (and keep under bench/results/)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 devices, 10 s of live updates, nothing written")
    parser.add_argument("--devices", type=int, nargs="+", default=None, help="fleet sizes (default: 1000 10000)")
    parser.add_argument("--interval", type=float, default=WebConfig.model_fields["live_interval_s"].default,
                        help="live batch interval, s")
    args = parser.parse_args()
    sizes = args.devices or ([200] if args.quick else [1000, 10000])
    box = machine()
    results = []
    for devices in sizes:
        results.append(run(devices, 10.0 if args.quick else 30.0, args.interval,
                           min(1.0, FLEET_MSG_PER_S / devices)))
        print(json.dumps(results[-1]), flush=True)
    print(report(results, box))
    if not args.quick:
        kept = merged(results)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(report(kept, box) + "\n")
        RESULTS_JSON.write_text(json.dumps({"machine": box, "cases": kept}, indent=2) + "\n")
    sys.exit(0 if all(r["met"] for r in results) else 1)


def merged(results: list[dict[str, Any]], per_size: int = 3) -> list[dict[str, Any]]:
    """These cases and the latest kept ones (up to per_size a fleet size, newest first): on a shared machine one
    run says little, so the table shows how the figures move with the machine's load."""
    try:
        old = json.loads(RESULTS_JSON.read_text())["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        old = []
    valid = [c for c in old if isinstance(c, dict) and "first_load_s" in c and "measured_at" in c]
    out: list[dict[str, Any]] = []
    for size in sorted({c["devices"] for c in results + valid}):
        runs = sorted((c for c in results + valid if c["devices"] == size), key=lambda c: c["measured_at"],
                      reverse=True)
        out += runs[:per_size]
    return out


if __name__ == "__main__":
    main()
