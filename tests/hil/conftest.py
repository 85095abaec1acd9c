"""HIL fixtures: a fresh network namespace per test, fault proxies, and a sweep that leaves no namespace behind."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil.fault_proxy import FaultProxy
from hil.netns import NetnsHarness, netns_unavailable, sweep_created, sweep_orphans

_SKIPPED: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _namespace_sweep() -> Iterator[None]:
    """Before: remove namespaces of killed earlier runs. After: remove any this run failed to delete."""
    if netns_unavailable() is None:
        sweep_orphans()
    yield
    if netns_unavailable() is None:
        left = sweep_created()
        if left:
            print(f"\nhil: swept leftover namespaces {left}", file=sys.stderr)


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], NetnsHarness]]:
    """Create namespaces (each deleted at teardown). Not root: skipped, saying so; root without iproute2 fails,
    since `make test` installs it (deploy/scripts/bootstrap-system.sh)."""
    why = netns_unavailable()
    if why is not None:
        if os.geteuid() == 0:
            pytest.fail(f"hil: {why}")
        _SKIPPED.append(why)
        print(f"hil: skipping namespace test: {why}", file=sys.stderr)
        pytest.skip(why)
    made: list[NetnsHarness] = []

    def make() -> NetnsHarness:
        harness = NetnsHarness()
        made.append(harness)
        return harness.create()

    try:
        yield make
    finally:
        for harness in made:
            harness.close()


@pytest.fixture
def netns(netns_factory: Callable[[], NetnsHarness]) -> NetnsHarness:
    """A namespace with lo up and a veth pair to the host on a free /30 of 10.213.0.0/16."""
    return netns_factory()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Start fault proxies: fault_proxy(upstream_host, upstream_port, listen_host=..., seed=...); all stopped at
    teardown."""
    proxies: list[FaultProxy] = []

    def make(upstream_host: str, upstream_port: int, **kw: Any) -> FaultProxy:
        proxy = FaultProxy(upstream_host, upstream_port, **kw)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say in the summary why namespace tests did not run, so a skip is never mistaken for a pass."""
    if _SKIPPED:
        terminalreporter.write_sep("-", "hil")
        terminalreporter.write_line(f"{len(_SKIPPED)} namespace test(s) skipped: {_SKIPPED[0]}")
