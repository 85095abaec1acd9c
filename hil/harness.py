"""Runs scenarios x variants on one target: builds the lab, the cloud side and the target, runs each scenario in
turn (a failure ends that row, never the run), and always removes everything, also on Ctrl-C or SIGTERM."""

from __future__ import annotations

import atexit
import logging
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from hil.cloud import CloudSide
from hil.device import DeviceTarget, NetnsDevice
from hil.errors import HilError
from hil.netns import netns_unavailable, sweep_created
from hil.packages import BasePackage
from hil.pair import PairHarness
from hil.results import Row, RunReport
from hil.scenarios import Scenario
from hil.session import Session

log = logging.getLogger(__name__)

TargetFactory = Callable[[PairHarness, Path], DeviceTarget]


def machine() -> str:
    """This machine in one line, for the report."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"


def new_report(base: BasePackage) -> RunReport:
    """An empty report for a run of this package."""
    return RunReport(started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=machine(),
                     package=f"{base.manifest.name} ({', '.join(base.precisions)}) from {base.origin}",
                     package_bytes=base.total_bytes)


def netns_target(lab: PairHarness, workdir: Path) -> DeviceTarget:
    """The default target: the lab's device namespace."""
    return NetnsDevice(lab, workdir)


@contextmanager
def _cleanup_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP become KeyboardInterrupt (so every `finally` runs); atexit sweeps namespaces as a last net."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    atexit.register(sweep_created)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def variant_unavailable(variant: str) -> str | None:
    """Why this machine cannot serve a variant (None when it can)."""
    if variant == "fp16":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "FP16 needs ONNX Runtime's CUDA execution provider; this machine has none"
    return None


def run_target(target_name: str, make_target: TargetFactory, scenarios: list[Scenario], variants: list[str],
               base: BasePackage, report: RunReport, out: Path, seed: int = 0,
               on_row: Callable[[Row], None] | None = None) -> None:
    """Every scenario (x variant where it crosses) on one target; rows are appended to report as they finish."""
    why = netns_unavailable()
    if why is not None:
        raise HilError(f"the HIL lab needs network namespaces: {why}")
    workdir = Path(tempfile.mkdtemp(prefix=f"edgeferry-hil-{target_name}-"))
    try:
        _run_in_lab(target_name, make_target, scenarios, variants, base, report, out, seed, on_row, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in_lab(target_name: str, make_target: TargetFactory, scenarios: list[Scenario], variants: list[str],
                base: BasePackage, report: RunReport, out: Path, seed: int, on_row: Callable[[Row], None] | None,
                workdir: Path) -> None:
    with _cleanup_on_signals(), PairHarness() as lab:
        cloud = CloudSide(lab, workdir / "cloud", seed)
        target: DeviceTarget | None = None
        try:
            cloud.start()
            target = make_target(lab, workdir / "device")
            session = Session(lab, cloud, target, base, out, seed)
            # Scenarios that do not cross run once, with the first variant this machine can serve.
            once = next((v for v in variants if variant_unavailable(v) is None), variants[0])
            for sc in scenarios:
                for variant in (variants if sc.cross else [once]):
                    row = Row(scenario=sc.name, variant=variant, target=target_name)
                    t0 = time.monotonic()
                    why_not = variant_unavailable(variant)
                    if why_not is not None:
                        row.status, row.error = "n/a", why_not
                    else:
                        _run_one(sc, session, variant, row)
                    row.duration_s = round(time.monotonic() - t0, 1)
                    report.rows.append(row)
                    if on_row is not None:
                        on_row(row)
        finally:
            try:
                if target is not None:
                    target.close()
            finally:
                cloud.close()


def _run_one(sc: Scenario, session: Session, variant: str, row: Row) -> None:
    """One scenario; its failure is recorded on the row, and its agents and faults are cleared afterwards."""
    try:
        sc.run(session, variant, row)
    except (HilError, OSError, TimeoutError, ValueError, KeyError) as exc:
        row.status, row.error = "error", f"{type(exc).__name__}: {exc}"[:2000]
        log.error("scenario %s/%s failed: %s", sc.name, variant, exc)
    finally:
        session.stop_agents()
        session.lab.clear()
        for proxy in (session.cloud.s3_proxy, session.cloud.mqtt_proxy):
            if proxy is not None:
                proxy.clear()
        if session.cloud.broker is None:
            session.cloud.start_broker()
        if session.cloud.s3 is None:
            session.cloud.start_s3()
