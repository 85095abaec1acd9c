"""One bad message costs only itself: every poison of issues 14 and 19 in one batch with honest devices' messages,
on SQLite and PostgreSQL; the honest figures commit, the bad device is counted, reads answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.exc import DataError

from fleet.db.store import FleetStore
from fleet.ingest import Ingest, Message
from fleet.registry import TelemetrySample
from tests.fleet.conftest import Clock
from tests.fleet.poison import state_doc, state_poisons, telemetry_doc, telemetry_poisons

BASE = "edgeferry/lab"
HONEST = ("cam-1", "cam-2")


def _honest(device: str, seq: int, retained: bool, now: int) -> list[Message]:
    return [
        (f"{BASE}/{device}/status", b"online", retained, now),
        (f"{BASE}/{device}/state", json.dumps(state_doc(device)).encode(), retained, now),
        (f"{BASE}/{device}/telemetry", json.dumps(telemetry_doc(device, seq, fps=float(seq))).encode(), False, now),
    ]


def test_every_poison_is_refused_against_its_device_and_the_rest_of_the_batch_commits(
    store: FleetStore, clock: Clock
) -> None:
    ingest = Ingest(store)
    now = clock()
    poisons = [("state", what, p) for what, p in state_poisons("evil")] + \
        [("telemetry", what, p) for what, p in telemetry_poisons("evil")]
    batch: list[Message] = [(f"{BASE}/evil/status", b"online", True, now),
                            (f"{BASE}/evil/state", json.dumps(state_doc("evil")).encode(), True, now)]
    for seq, (leaf, _what, payload) in enumerate(poisons):
        batch.append((f"{BASE}/evil/{leaf}", payload, leaf == "state", now))  # retained poison, as the issue's
        for device in HONEST:
            batch.extend(_honest(device, seq, retained=seq == 0, now=now))
    ingest.process(batch)

    for device in HONEST:
        rec = store.device(device)
        assert (rec.status, rec.groups, rec.refused) == ("online", ("north",), 0)
        figures = [s.figures["fps"] for s in store.telemetry_window(device, 0, 2**62)]
        assert figures == [float(i) for i in range(len(poisons))]
    evil = store.device("evil")
    assert evil.refused == len(poisons), evil.last_refused
    assert evil.groups == ("north",) and evil.telemetry_interval_s == 0.5  # its honest state stands
    assert evil.last_refused and evil.last_refused.startswith("telemetry:")
    assert store.telemetry_window("evil", 0, 2**62) == []
    assert sum(ingest.stats.rejected.values()) == len(poisons)
    assert [r.device_id for r in store.list_devices()] == ["cam-1", "cam-2", "evil"]


def test_a_message_the_database_refuses_costs_only_itself(store: FleetStore, clock: Clock,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the database will not store (PostgreSQL's range or encoding limits) fails the batch's transaction:
    it is applied again per device and per message, and only that message is refused."""
    real_add = store.telemetry.add

    def add(batch: Sequence[tuple[str, TelemetrySample, int]], conn: Any = None) -> None:
        if any(s.figures.get("fps") == 13.0 for _, s, _ in batch):
            raise DataError("INSERT INTO telemetry_samples", {}, ValueError("value out of range for type"))
        real_add(batch, conn)

    monkeypatch.setattr(store.telemetry, "add", add)
    ingest = Ingest(store)
    now = clock()
    batch: list[Message] = []
    for seq in range(5):
        for device in ("cam-1", "cam-2"):
            fps = 13.0 if (device, seq) == ("cam-2", 2) else float(seq)
            doc = telemetry_doc(device, seq, fps=fps)
            batch.append((f"{BASE}/{device}/telemetry", json.dumps(doc).encode(), False, now))
    ingest.process(batch)
    assert len(store.telemetry_window("cam-1", 0, 2**62)) == 5
    assert [s.seq for s in store.telemetry_window("cam-2", 0, 2**62)] == [0, 1, 3, 4]
    assert store.device("cam-1").refused == 0
    bad = store.device("cam-2")
    assert bad.refused == 1 and "refused by the database" in (bad.last_refused or "")
    assert ingest.stats.accepted["telemetry"] == 9


def test_a_reply_cannot_answer_another_devices_command(store: FleetStore, clock: Clock) -> None:
    from fleet.db.commands import CommandRecord

    store.commands.record(CommandRecord("req-1", "cam-1", "ping", {}, 1, clock()))
    reply = {"device_id": "cam-2", "boot_id": "b", "seq": 1, "ts": clock(), "id": "req-1", "command": "ping",
             "ok": True}
    Ingest(store).process([(f"{BASE}/cam-2/cmd/ping/reply", json.dumps(reply).encode(), False, clock())])
    got = store.commands.get("req-1")
    assert got is not None and got.reply_ok is None
