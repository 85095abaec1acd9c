"""Fleet test fixtures: the real PostgreSQL server (tests/fixtures/postgres.py) and a store per back-end."""

from __future__ import annotations

from tests.fixtures.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
