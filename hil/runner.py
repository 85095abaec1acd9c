"""Plays a FaultPlan against the local harness from a background thread, on the plan's own clock.

Who does what here: link_down, link_up and rate_limit act on the namespace link; delay and drop_connections on the
fault proxy (this kernel has no netem); stall on the proxy when there is one, else on the link; clear on both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from hil.errors import HilError
from hil.plan import Action, FaultPlan, timeline

log = logging.getLogger(__name__)


class LinkFaults(Protocol):
    """What the runner needs from a link harness (hil.netns.NetnsHarness)."""

    def link_down(self) -> None: ...
    def link_up(self) -> None: ...
    def rate_limit(self, rate_kbit: float, burst_bytes: int = 3200, latency_ms: float = 500) -> None: ...
    def unlimit(self) -> None: ...
    def stall(self) -> None: ...
    def resume(self) -> None: ...
    def clear(self) -> None: ...


class ProxyFaults(Protocol):
    """What the runner needs from a proxy (hil.fault_proxy.FaultProxy)."""

    def set_delay(self, ms: float, jitter_ms: float = 0.0) -> None: ...
    def stall(self) -> None: ...
    def resume(self) -> None: ...
    def drop_connections(self) -> int: ...
    def clear(self) -> None: ...


@dataclass(frozen=True)
class Applied:
    """An action the runner performed: when it was planned and when it happened (seconds from start)."""

    kind: str
    undo: bool
    planned_s: float
    done_s: float


_LINK_KINDS = {"link_down", "link_up", "rate_limit"}
_PROXY_KINDS = {"delay", "drop_connections"}


def check_plan(plan: FaultPlan, link: LinkFaults | None, proxy: ProxyFaults | None) -> None:
    """Fail before anything starts if a step needs a harness that was not given."""
    missing = []
    for i, step in enumerate(plan.steps):
        if step.kind in _LINK_KINDS and link is None:
            missing.append(f"step {i} ({step.kind}) needs the namespace link")
        elif step.kind in _PROXY_KINDS and proxy is None:
            missing.append(f"step {i} ({step.kind}) needs the fault proxy (no netem on this kernel)")
        elif step.kind in {"stall", "clear"} and link is None and proxy is None:
            missing.append(f"step {i} ({step.kind}) needs the link or the proxy")
    if missing:
        raise HilError(f"plan {plan.name!r} cannot run here: " + "; ".join(missing))


class FaultRunner:
    """Applies a plan in a thread; a context manager that stops early and clears every fault on exit."""

    def __init__(self, plan: FaultPlan, *, link: LinkFaults | None = None, proxy: ProxyFaults | None = None) -> None:
        check_plan(plan, link, proxy)
        self.plan = plan
        self.link = link
        self.proxy = proxy
        self.applied: list[Applied] = []
        self._actions = timeline(plan)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._t0 = 0.0
        self._thread = threading.Thread(target=self._run, name=f"fault-runner-{plan.name}", daemon=True)

    def start(self) -> FaultRunner:
        """Start the plan's clock now."""
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> list[Applied]:
        """Block until every action ran (default bound: plan end + 60 s); re-raises a fault that failed."""
        bound = self.plan.end_s + 60 if timeout is None else timeout
        self._thread.join(bound)
        if self._thread.is_alive():
            raise HilError(f"plan {self.plan.name!r} still running after {bound:g} s")
        if self._error is not None:
            raise HilError(f"plan {self.plan.name!r} failed: {self._error}") from self._error
        return list(self.applied)

    def stop(self, clear: bool = True) -> None:
        """Skip the remaining actions and (by default) remove every fault in force."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        if clear:
            for surface in (self.link, self.proxy):
                if surface is not None:
                    surface.clear()

    @property
    def elapsed_s(self) -> float:
        """Seconds on the plan's clock."""
        return time.monotonic() - self._t0

    def __enter__(self) -> FaultRunner:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        for action in self._actions:
            if self._stop.wait(max(0.0, action.at_s - self.elapsed_s)):
                return
            try:
                self._op(action)()
            except (HilError, OSError) as exc:
                log.error("fault %s at %.1f s failed: %s", action.step.kind, action.at_s, exc)
                self._error = exc
                return
            self.applied.append(Applied(action.step.kind, action.undo, action.at_s, self.elapsed_s))
            log.info("fault %s%s at %.1f s", "undo " if action.undo else "", action.step.kind, self.elapsed_s)

    def _op(self, action: Action) -> Callable[[], object]:
        step, undo, link, proxy = action.step, action.undo, self.link, self.proxy
        if step.kind == "link_down" and link is not None:
            return link.link_up if undo else link.link_down
        if step.kind == "link_up" and link is not None:
            return link.link_up
        if step.kind == "rate_limit" and link is not None:
            return link.unlimit if undo else lambda: link.rate_limit(step.rate_kbit, step.burst_bytes, step.latency_ms)
        if step.kind == "delay" and proxy is not None:
            return (lambda: proxy.set_delay(0, 0)) if undo else lambda: proxy.set_delay(step.ms, step.jitter_ms)
        if step.kind == "drop_connections" and proxy is not None:
            return proxy.drop_connections
        if step.kind == "stall":
            surface: LinkFaults | ProxyFaults | None = proxy if proxy is not None else link
            if surface is not None:
                return surface.resume if undo else surface.stall
        if step.kind == "clear":
            return self._clear_all
        raise HilError(f"no harness here can apply {step.kind}")

    def _clear_all(self) -> None:
        for surface in (self.link, self.proxy):
            if surface is not None:
                surface.clear()
