"""Fleet test fixtures: the real PostgreSQL server (tests/fixtures/postgres.py) and a FleetStore per back-end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.db.store import FleetStore
from tests.fixtures.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


class Clock:
    """A settable fleet clock in Unix ms."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now_ms += int(seconds * 1000)


@pytest.fixture
def clock() -> Clock:
    """The fleet clock the store fixture uses."""
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL on each back-end: an SQLite file, and a new database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.sqlite"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store_factory(db_url: str, clock: Clock) -> Iterator[Callable[..., FleetStore]]:
    """Open FleetStores on the same database (like several workers); closed at teardown."""
    opened: list[FleetStore] = []

    def make(fleet: str = "lab") -> FleetStore:
        s = FleetStore.open(db_url, fleet, clock=clock)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(store_factory: Callable[..., FleetStore]) -> FleetStore:
    """A FleetStore for fleet 'lab' on each back-end."""
    return store_factory()
