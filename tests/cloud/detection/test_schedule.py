"""The detector's learning-rate schedule: one cycle over steps, or over a time budget when that runs out first."""

from __future__ import annotations

import pytest

from cloud.detection.schedule import FLOOR, Budget, BudgetedProgress, one_cycle


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_cycle_warms_up_peaks_and_anneals_to_the_floor() -> None:
    assert one_cycle(0.0) == pytest.approx(FLOOR)
    assert one_cycle(0.05) == pytest.approx(1.0)
    assert one_cycle(0.5) < one_cycle(0.2) < 1.0
    assert one_cycle(1.0) == pytest.approx(FLOOR) and one_cycle(3.0) == pytest.approx(FLOOR)


def test_without_budgets_progress_is_the_share_of_steps() -> None:
    progress = BudgetedProgress(200)
    assert progress(50) == 0.25 and progress.spent() == 0.0


def test_a_time_budget_that_runs_out_first_anneals_the_rate_and_reports_it_spent() -> None:
    clock = Clock()
    progress = BudgetedProgress(10_000, [Budget(60.0, clock)])
    progress.start()
    clock.now += 30
    assert progress(10) == pytest.approx(0.5)  # half the time, a tenth of a percent of the steps
    assert progress.lr_factor(10) == pytest.approx(one_cycle(0.5))
    clock.now += 31
    assert progress.spent() > 1.0 and progress.lr_factor(20) == pytest.approx(FLOOR)


def test_the_budget_used_most_decides() -> None:
    wall, cpu = Clock(), Clock()
    progress = BudgetedProgress(1000, [Budget(100.0, wall), Budget(10.0, cpu)])
    progress.start()
    wall.now += 50
    cpu.now += 8
    assert progress(0) == pytest.approx(0.8)


def test_the_clocks_are_read_once_per_step_however_often_the_step_asks() -> None:
    reads: list[float] = []

    def clock() -> float:  # a second further on at every read
        reads.append(float(len(reads)))
        return reads[-1]

    progress = BudgetedProgress(10_000, [Budget(100.0, clock)])
    progress.start()
    first = progress.lr_factor(3)  # the scheduler's question at step 3
    assert progress.spent(3) == pytest.approx(0.01) and progress.lr_factor(3) == first  # the stop check's
    assert len(reads) == 2, "one read to start, one for step 3"
    assert progress.spent(4) == pytest.approx(0.02) and len(reads) == 3, "the next step reads the clock again"
