"""Many device rows' compare-and-sets in one statement that says which rows it wrote, many samples in one write,
and many devices' stream figures in one upsert: SQLite's UPDATE ... FROM (VALUES ...) RETURNING, executemany and
INSERT ... VALUES ... ON CONFLICT, PostgreSQL's UPDATE ... FROM unnest(arrays) RETURNING (a handful of parameters
whatever the batch's size), COPY and INSERT ... SELECT FROM unnest(arrays) ON CONFLICT. The SQL is written once per
shape: SQLAlchemy's compiler costs more than the database for a thousand-row VALUES list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from fleet.db.schema import device_streams, devices, telemetry_history, telemetry_samples

# SQLite binds at most 32,766 parameters per statement (3.32 and later).
SQLITE_MAX_PARAMS = 32_000
_JSON_COLUMNS = frozenset(c.name for c in devices.columns if isinstance(c.type, JSON))
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
# One CAS row: (device id, the rev it was read at, the new values of the written columns in their order).
CasRow = tuple[str, int, tuple[Any, ...]]


def _pg_array(column: str) -> str:
    """The array type a column's values travel in (JSON as text, cast on the way in)."""
    if column in _JSON_COLUMNS:
        return "text[]"
    return f"{devices.c[column].type.compile(dialect=_PG)}[]"


@cache
def _pg_cas_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = CAST(v.{c} AS JSON)" if c in _JSON_COLUMNS else f"{c} = v.{c}" for c in columns)
    arrays = ", ".join(["%s::varchar[]", "%s::integer[]", *(f"%s::{_pg_array(c)}" for c in columns)])
    return (f"UPDATE {devices.name} AS d SET {sets} FROM unnest({arrays}) AS v(w_device, w_rev, "
            f"{', '.join(columns)}) WHERE d.fleet = %s AND d.device_id = v.w_device AND d.rev = v.w_rev "
            "RETURNING d.device_id")


@cache
def _sqlite_cas_sql(columns: tuple[str, ...], rows: int) -> str:
    sets = ", ".join(f"{c} = v.column{i + 3}" for i, c in enumerate(columns))
    row = f"({', '.join('?' * (len(columns) + 2))})"
    return (f"UPDATE {devices.name} SET {sets} FROM (VALUES {', '.join([row] * rows)}) AS v "
            "WHERE fleet = ? AND device_id = v.column1 AND rev = v.column2 RETURNING device_id")


def _stored(column: str, value: Any) -> Any:
    return json.dumps(value) if column in _JSON_COLUMNS and value is not None else value


def cas_update(conn: Connection, fleet: str, columns: tuple[str, ...], rows: Sequence[CasRow]) -> set[str]:
    """Write `columns` of each row whose rev is still the one it was read at; returns the ids written (a row
    another writer changed in between, or removed, is not)."""
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        arrays: list[list[Any]] = [[r[0] for r in rows], [r[1] for r in rows]]
        arrays += [[_stored(c, r[2][i]) for r in rows] for i, c in enumerate(columns)]
        return set(conn.exec_driver_sql(_pg_cas_sql(columns), (*arrays, fleet)).scalars())
    per = max(1, SQLITE_MAX_PARAMS // (len(columns) + 2))
    written: set[str] = set()
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        params: list[Any] = []
        for device, rev, values in chunk:
            params += (device, rev, *(_stored(c, v) for c, v in zip(columns, values, strict=True)))
        params.append(fleet)
        written.update(conn.exec_driver_sql(_sqlite_cas_sql(columns, len(chunk)), tuple(params)).scalars())
    return written


SAMPLE_COLUMNS = ("fleet", "device_id", "ts_ms", "received_ms", "boot_id", "seq", "figures", "class_counts")
# A sample row as stored: the JSON columns already as text.
SampleRow = tuple[str, str, int, int, str, int, str, str]
_PG_COPY_SAMPLES = f"COPY {telemetry_samples.name} ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN"
_SQLITE_SAMPLES = (f"INSERT INTO {telemetry_samples.name} ({', '.join(SAMPLE_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(SAMPLE_COLUMNS))})")


def insert_samples(conn: Connection, rows: Sequence[SampleRow]) -> None:
    """Append sample rows (each names its fleet) by COPY on PostgreSQL, one executemany on SQLite, in row order."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # COPY on the transaction's own connection: psycopg formats rows in C, where arrays were dumped per value.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        try:
            with dbapi.cursor() as cur, cur.copy(_PG_COPY_SAMPLES) as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        except conn.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
            # As SQLAlchemy raises it, so the ingest applies the batch again device by device.
            raise DBAPIError(_PG_COPY_SAMPLES, None, exc) from exc
        return
    conn.exec_driver_sql(_SQLITE_SAMPLES, list(rows))  # type: ignore[arg-type]


# A history row as stored: fleet, device, bucket start, samples, mean figures as JSON text.
HistoryRow = tuple[str, str, int, int, str]
_HISTORY_COLUMNS = "fleet, device_id, bucket_ms, samples, figures"


def insert_history(conn: Connection, rows: Sequence[HistoryRow]) -> None:
    """Append history rows through the driver's executemany (JSON already text: no per-value processing)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        sql = (f"INSERT INTO {telemetry_history.name} ({_HISTORY_COLUMNS}) "
               "VALUES (%s, %s, %s, %s, CAST(%s AS JSON))")
    else:
        sql = f"INSERT INTO {telemetry_history.name} ({_HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
    conn.exec_driver_sql(sql, list(rows))  # type: ignore[arg-type]


# A device's stream figures as stored: device id, ts, received, streams as JSON text, streams left out.
StreamRow = tuple[str, int, int, str, int]
_STREAM_COLUMNS = ("fleet", "device_id", "ts_ms", "received_ms", "streams", "dropped")
# A stored row is replaced only by a report as new or newer by the device's clock (a replayed older one is not).
_STREAM_CONFLICT = (f" ON CONFLICT (fleet, device_id) DO UPDATE SET ts_ms = excluded.ts_ms, received_ms = "
                    f"excluded.received_ms, streams = excluded.streams, dropped = excluded.dropped "
                    f"WHERE {device_streams.name}.ts_ms <= excluded.ts_ms")
_PG_STREAMS = (f"INSERT INTO {device_streams.name} ({', '.join(_STREAM_COLUMNS)}) SELECT %s, v.d, v.t, v.r, "
               "CAST(v.s AS JSON), v.x FROM unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::text[], "
               f"%s::bigint[]) AS v(d, t, r, s, x){_STREAM_CONFLICT}")


@cache
def _sqlite_streams_sql(rows: int) -> str:
    row = f"({', '.join('?' * len(_STREAM_COLUMNS))})"
    return (f"INSERT INTO {device_streams.name} ({', '.join(_STREAM_COLUMNS)}) VALUES {', '.join([row] * rows)}"
            f"{_STREAM_CONFLICT}")


def upsert_streams(conn: Connection, fleet: str, rows: Sequence[StreamRow]) -> None:
    """Insert or replace each device's stream figures (one row per device: ON CONFLICT refuses a key twice in a
    statement) unless the stored ones are newer, in one statement (SQLite: one per SQLITE_MAX_PARAMS // columns
    rows, 5,333)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_STREAMS, (fleet, *map(list, zip(*rows, strict=True))))
        return
    per = SQLITE_MAX_PARAMS // len(_STREAM_COLUMNS)
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        params = [v for device, ts, received, streams, dropped in chunk
                  for v in (fleet, device, ts, received, streams, dropped)]
        conn.exec_driver_sql(_sqlite_streams_sql(len(chunk)), tuple(params))
