"""A supervised thread survives any exception: counted, logged once per failure, retried with a growing delay."""

from __future__ import annotations

import threading

import pytest

from edge.supervise import Health, keep_running, spawn


def test_a_failing_body_is_retried_counted_and_marked_degraded_until_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health, stop = Health(), threading.Event()
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise OverflowError("cannot convert float infinity to integer")
        assert health.degraded() == {"poll": "OverflowError: cannot convert float infinity to integer"}
        health.ok("poll")
        stop.set()

    with caplog.at_level("ERROR"):
        keep_running("poll", body, stop, health, first_backoff_s=0.01)
    assert len(calls) == 3
    assert health.errors("poll") == 2 and health.metrics() == {"thread_errors": 2.0}
    assert health.degraded() == {}
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["poll thread failed"] * 2
    assert all(r.exc_info is None for r in caplog.records)


def test_a_body_that_returns_ends_the_thread_unless_asked_to_restart() -> None:
    health, stop = Health(), threading.Event()
    runs: list[int] = []
    keep_running("once", lambda: runs.append(1), stop, health)
    assert runs == [1]

    def until_three() -> None:
        runs.append(1)
        if len(runs) >= 4:
            stop.set()

    keep_running("again", until_three, stop, health, restart_on_return=True, first_backoff_s=0.01)
    assert len(runs) == 4 and health.errors() == 0


def test_stop_ends_the_backoff_wait_at_once() -> None:
    health, stop = Health(), threading.Event()

    def body() -> None:
        raise RuntimeError("always")

    thread = spawn("flaky", body, stop, health)
    while health.errors("flaky") == 0:
        thread.join(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_ok_is_free_for_healthy_components() -> None:
    health = Health()
    health.ok("frames")
    assert health.degraded() == {} and health.errors() == 0
