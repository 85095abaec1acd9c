"""Opening the fleet database: SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3), schema created and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from fleet.db.migrate import add_missing
from fleet.db.schema import SCHEMA_VERSION, meta, metadata
from fleet.errors import StorageError

SQLITE_BUSY_TIMEOUT_S = 30


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def open_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for url with the fleet schema in place; StorageError in one line when it cannot be used."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"database URL {url!r} is not a SQLAlchemy URL: use sqlite:///path or "
                           "postgresql+psycopg://user@host/db") from exc
    kw: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kw["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kw.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    else:
        raise StorageError(f"database {safe_url(url)}: only sqlite and postgresql are supported")
    try:
        engine = create_engine(parsed, **kw)
    except (NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"database {safe_url(url)}: driver missing ({exc}); pip install -e '.[fleet]'") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _ensure_schema(engine, url)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cur.close()


def _ensure_schema(engine: Engine, url: str, attempts: int = 3) -> None:
    try:
        metadata.create_all(engine)
        add_missing(engine)
        with engine.begin() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif found != str(SCHEMA_VERSION):
                raise StorageError(
                    f"database {safe_url(url)} holds fleet schema {found}, this edgeferry uses {SCHEMA_VERSION}"
                )
    except DBAPIError as exc:
        if attempts > 1 and any(
                w in str(exc.orig) for w in ("already exists", "duplicate key", "duplicate column")):
            # Another worker created the same tables at the same moment; the schema is there now.
            return _ensure_schema(engine, url, attempts - 1)
        raise StorageError(f"database {safe_url(url)}: {str(exc.orig).strip().splitlines()[0]}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"database {safe_url(url)}: {exc}") from exc
