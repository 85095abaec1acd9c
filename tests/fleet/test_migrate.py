"""A database made before the ingest counted refusals (no `refused`/`shed` columns, no receive-time index) is
brought up to date in place when a worker opens it, on both back-ends, and its devices keep their data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import inspect, text

from fleet.db.store import FleetStore

ADDED = ("refused", "last_refused", "last_refused_ms", "shed")


def test_an_older_database_gets_the_new_columns_and_index(store_factory: Callable[..., FleetStore]) -> None:
    old = store_factory()
    old.devices.update("cam-1", lambda r: replace(r, agent_version="0.1.0"))
    with old.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_samples_received"))
        for col in ADDED:
            conn.execute(text(f"ALTER TABLE devices DROP COLUMN {col}"))
    old.close()

    new = store_factory()
    insp = inspect(new.engine)
    assert set(ADDED) <= {c["name"] for c in insp.get_columns("devices")}
    assert "ix_samples_received" in {i["name"] for i in insp.get_indexes("telemetry_samples")}
    rec = new.devices.update("cam-1", lambda r: replace(r, refused=r.refused + 1, last_refused="telemetry: NaN"))
    assert (rec.agent_version, rec.refused, new.device("cam-1").last_refused) == ("0.1.0", 1, "telemetry: NaN")
