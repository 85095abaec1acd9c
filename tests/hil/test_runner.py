"""The runner plays a plan on the right harness, undoes timed faults, refuses plans it cannot play, and clears on
exit."""

from __future__ import annotations

import time

import pytest

from hil.errors import HilError
from hil.plan import Clear, Delay, DropConnections, FaultPlan, LinkDown, LinkUp, RateLimit, Stall
from hil.runner import FaultRunner


class RecordingLink:
    """Stands in for NetnsHarness: records calls in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def link_down(self) -> None:
        self.log.append("link.down")

    def link_up(self) -> None:
        self.log.append("link.up")

    def rate_limit(self, rate_kbit: float, burst_bytes: int = 3200, latency_ms: float = 500) -> None:
        self.log.append(f"link.rate {rate_kbit:g} {burst_bytes} {latency_ms:g}")

    def unlimit(self) -> None:
        self.log.append("link.unlimit")

    def stall(self) -> None:
        self.log.append("link.stall")

    def resume(self) -> None:
        self.log.append("link.resume")

    def clear(self) -> None:
        self.log.append("link.clear")


class RecordingProxy:
    """Stands in for FaultProxy: records calls in order."""

    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log = log
        self.fail = fail

    def set_delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        self.log.append(f"proxy.delay {ms:g} {jitter_ms:g}")

    def stall(self) -> None:
        self.log.append("proxy.stall")

    def resume(self) -> None:
        self.log.append("proxy.resume")

    def drop_connections(self) -> int:
        if self.fail:
            raise HilError("proxy is gone")
        self.log.append("proxy.drop")
        return 1

    def clear(self) -> None:
        self.log.append("proxy.clear")


def test_each_fault_goes_to_its_harness_and_timed_ones_undo_themselves() -> None:
    log: list[str] = []
    plan = FaultPlan(
        steps=[
            # Binary-exact times, so "the same instant" is exact in float arithmetic.
            Delay(at_s=0, ms=30, jitter_ms=10, duration_s=0.5),
            LinkDown(at_s=0.125, duration_s=0.125),
            RateLimit(at_s=0.25, rate_kbit=64, duration_s=0.25),
            DropConnections(at_s=0.5),
            Stall(at_s=0.625, duration_s=0.125),
            LinkUp(at_s=0.875),
        ]
    )
    runner = FaultRunner(plan, link=RecordingLink(log), proxy=RecordingProxy(log)).start()
    applied = runner.wait(timeout=30)
    assert log == [
        "proxy.delay 30 10",
        "link.down",
        "link.up",  # link_down's duration ended at the same instant rate_limit starts: undo first
        "link.rate 64 3200 500",
        "proxy.delay 0 0",  # at 0.5 s: both undos, in plan order, before the drop that starts then
        "link.unlimit",
        "proxy.drop",
        "proxy.stall",  # stall goes to the proxy when there is one
        "proxy.resume",
        "link.up",
    ]
    assert len(applied) == len(log)
    assert all(a.done_s >= a.planned_s for a in applied)


def test_without_a_proxy_stall_black_holes_the_link() -> None:
    log: list[str] = []
    FaultRunner(FaultPlan(steps=[Stall(at_s=0, duration_s=0.05)]), link=RecordingLink(log)).start().wait(30)
    assert log == ["link.stall", "link.resume"]


def test_a_plan_needing_a_missing_harness_is_refused_before_anything_runs() -> None:
    plan = FaultPlan(steps=[Delay(at_s=0, ms=5), LinkDown(at_s=1), DropConnections(at_s=2)])
    with pytest.raises(HilError, match=r"step 0 \(delay\) needs the fault proxy.*step 2 \(drop_connections\)"):
        FaultRunner(plan, link=RecordingLink([]))
    with pytest.raises(HilError, match=r"step 1 \(link_down\) needs the namespace link"):
        FaultRunner(plan, proxy=RecordingProxy([]))
    with pytest.raises(HilError, match=r"step 0 \(clear\) needs the link or the proxy"):
        FaultRunner(FaultPlan(steps=[Clear(at_s=0)]))


def test_a_failing_fault_stops_the_plan_and_is_raised_by_wait() -> None:
    log: list[str] = []
    plan = FaultPlan(steps=[DropConnections(at_s=0), LinkDown(at_s=0.05)])
    runner = FaultRunner(plan, link=RecordingLink(log), proxy=RecordingProxy(log, fail=True)).start()
    with pytest.raises(HilError, match="proxy is gone"):
        runner.wait(timeout=30)
    assert log == []


def test_leaving_the_block_early_skips_the_rest_and_clears_every_fault() -> None:
    log: list[str] = []
    plan = FaultPlan(steps=[LinkDown(at_s=0), Stall(at_s=600, duration_s=1)])
    with FaultRunner(plan, link=RecordingLink(log), proxy=RecordingProxy(log)):
        for _ in range(200):
            if log:
                break
            time.sleep(0.05)
    assert log == ["link.down", "link.clear", "proxy.clear"]
