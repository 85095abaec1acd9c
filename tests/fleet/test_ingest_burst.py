"""A burst of 10,000 telemetry messages (1,000 devices x 10, from the independent load generator) through a real
Mosquitto into `fleet serve`, on SQLite and PostgreSQL: every message is stored once, counted, and each device's
samples are stored in the order it sent them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from fleet.db.schema import telemetry_samples
from fleet.service import FleetService
from tests.fixtures.broker import Broker
from tests.fixtures.loadgen import LoadGenerator
from tests.fleet.helpers import eventually, fleet_config

DEVICES = 1000
PER_DEVICE = 10


def test_a_burst_of_10000_messages_keeps_each_devices_order_and_loses_nothing(
    tmp_path: Path, mosquitto: Broker, db_url: str
) -> None:
    svc = FleetService(fleet_config(mosquitto, db_url))
    svc.start()
    try:
        store, ingest = svc.store, svc.ingest
        assert store is not None and ingest is not None
        gen = LoadGenerator(mosquitto.host, mosquitto.port, "it", connections=4)
        devices = [f"dev-{i:04d}" for i in range(DEVICES)]
        gen.burst(devices, PER_DEVICE)
        assert gen.wait_acked(60), f"the broker acknowledged {gen.counts.acked} of {gen.counts.sent}"
        gen.close()
        total = DEVICES * PER_DEVICE

        def stored() -> int:
            with store.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(telemetry_samples)).scalar_one())

        eventually(lambda: stored() >= total, 120, f"{total} samples stored")
        with store.engine.connect() as conn:
            rows = conn.execute(select(telemetry_samples.c.device_id, telemetry_samples.c.seq)
                                .order_by(telemetry_samples.c.id)).all()
        order: dict[str, list[int]] = {}
        for device, seq in rows:
            order.setdefault(device, []).append(int(seq))
        assert sorted(order) == devices
        assert all(seqs == list(range(1, PER_DEVICE + 1)) for seqs in order.values()), \
            [d for d, s in order.items() if s != list(range(1, PER_DEVICE + 1))][:5]
        assert ingest.stats.accepted.get("telemetry") == total
        assert ingest.stats.dropped == 0 and ingest.stats.rejected == {}
        records = store.list_devices()
        assert len(records) == DEVICES and all(r.last_telemetry_ms and r.shed == 0 for r in records)
    finally:
        svc.stop()
