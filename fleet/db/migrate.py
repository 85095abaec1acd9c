"""Additive schema changes on an existing database: columns and indexes added since schema 1 are created in place.

`metadata.create_all` creates missing tables only; a database made by an older edgeferry lacks the columns and
indexes added later, and every new one here has a default, so adding them never needs a data migration.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, inspect, text

from fleet.db.schema import metadata


def add_missing(engine: Engine) -> list[str]:
    """Add the columns and indexes of `metadata` that existing tables lack; returns what was added."""
    added: list[str] = []
    with engine.begin() as conn:
        insp = inspect(conn)
        for table in metadata.sorted_tables:
            if not insp.has_table(table.name):
                continue
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have:
                    _add_column(conn, table.name, col)
                    added.append(f"{table.name}.{col.name}")
            indexes = {i["name"] for i in insp.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(conn, checkfirst=True)
                    added.append(str(index.name))
    return added


def _add_column(conn: Connection, table: str, col: object) -> None:
    from sqlalchemy import Column

    assert isinstance(col, Column)
    kind = col.type.compile(dialect=conn.dialect)
    default = col.server_default.arg if col.server_default is not None else None  # type: ignore[attr-defined]
    clause = f" NOT NULL DEFAULT {default}" if default is not None and not col.nullable else (
        f" DEFAULT {default}" if default is not None else "")
    prep = conn.dialect.identifier_preparer
    conn.execute(text(f"ALTER TABLE {prep.quote(table)} ADD COLUMN {prep.quote(col.name)} {kind}{clause}"))
