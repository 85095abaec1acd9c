"""A one-cycle learning rate over the larger of step progress and the progress of wall-clock or CPU-time budgets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloud.detection import cpu_clock

WARMUP = 0.05
FLOOR = 0.01


def one_cycle(progress: float) -> float:
    """LR factor at a progress 0-1: linear warm-up over the first 5%, then cosine down to 1% of the peak."""
    p = min(max(progress, 0.0), 1.0)
    if p < WARMUP:
        return FLOOR + (1 - FLOOR) * p / WARMUP
    t = (p - WARMUP) / (1 - WARMUP)
    return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Budget:
    """Seconds on one clock: wall (time.perf_counter) or training's CPU time (cpu_clock: all threads, loader
    workers included)."""

    seconds: float
    clock: Callable[[], float]


def budgets(wall_s: float | None, cpu_s: float | None) -> list[Budget]:
    """The budgets a config sets; CPU time makes a run's work the same on a busy machine as on an idle one."""
    out = []
    if wall_s is not None:
        out.append(Budget(wall_s, time.perf_counter))
    if cpu_s is not None:
        out.append(Budget(cpu_s, cpu_clock.cpu_seconds))
    return out


class BudgetedProgress:
    """Progress of a run bounded by steps and by time budgets: whichever runs out first sets the schedule."""

    def __init__(self, total_steps: int, limits: Sequence[Budget] = ()) -> None:
        self.total_steps = max(total_steps, 1)
        self.limits = list(limits)
        self._started: list[float] | None = None
        self._read: tuple[int, float] | None = None  # (step, share spent): the clocks are read once a step

    def start(self) -> None:
        """Start the budget clocks (done by the first call otherwise)."""
        self._started = [b.clock() for b in self.limits]
        self._read = None

    def spent(self, step: int | None = None) -> float:
        """The largest share of any time budget used so far (0 without budgets).

        With a step, the clocks are read once for it: the scheduler and the stop check ask at every step, and a
        clock walking the loader workers costs a system call per process.
        """
        if self._read is not None and step is not None and self._read[0] == step:
            return self._read[1]
        if self._started is None:
            self.start()
        assert self._started is not None
        share = max((((b.clock() - t0) / b.seconds) for b, t0 in zip(self.limits, self._started, strict=True)),
                    default=0.0)
        if step is not None:
            self._read = (step, share)
        return share

    def __call__(self, step: int) -> float:
        """Progress 0-1 after `step` optimiser steps."""
        return max(step / self.total_steps, self.spent(step))

    def lr_factor(self, step: int) -> float:
        """The one-cycle factor at this step (LambdaLR's callable)."""
        return one_cycle(self(step))
