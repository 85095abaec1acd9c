"""Insert-or-update and insert-if-absent statements for the two back-ends (both speak ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Insert values, or update every non-key column of the row with the same keys."""
    stmt = _insert(conn, table).values(**values)
    update = {k: stmt.excluded[k] for k in values if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update))


def insert_absent(conn: Connection, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Insert values unless a row with the same keys exists; True when this call inserted it."""
    stmt = (_insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
            .returning(table.c[keys[0]]))
    # rowcount is -1 here with psycopg 3; RETURNING yields a row only when this statement inserted one.
    return conn.execute(stmt).first() is not None
