"""The same repository tests on both back-ends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from fleet.db.desired import DesiredEntry, Published
from fleet.db.store import FleetStore
from fleet.errors import EmptyGroupError, StorageError, UnknownDeviceError
from fleet.registry import DeviceRecord, TelemetrySample
from tests.fleet.conftest import Clock


def _online(store: FleetStore, device: str, groups: tuple[str, ...] = (), version: int = 1) -> None:
    now = store.clock()
    store.devices.update(device, lambda r: replace(
        r, reported_status="online", last_seen_ms=now, reported_groups=groups, groups=groups, model_version=version,
    ))


def test_device_round_trip_and_status_as_of_now(store: FleetStore, clock: Clock) -> None:
    _online(store, "cam-1", ("north",), version=3)
    rec = store.device("cam-1")
    assert (rec.status, rec.groups, rec.model_version, rec.rev) == ("online", ("north",), 3, 1)
    clock.advance(16)  # default interval 5 s: 3 intervals = 15 s of silence
    assert store.device("cam-1").status == "stale"
    with pytest.raises(UnknownDeviceError, match="never reported"):
        store.device("cam-9")


def test_concurrent_updates_lose_nothing(store_factory: Callable[..., FleetStore]) -> None:
    a, b = store_factory(), store_factory()
    a.devices.update("cam-1", lambda r: r)

    def bump(s: FleetStore) -> None:
        for _ in range(25):
            s.devices.update("cam-1", lambda r: replace(r, restarts=r.restarts + 1))

    threads = [threading.Thread(target=bump, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.device("cam-1").restarts == 50


def test_batched_updates_lose_nothing_against_concurrent_ones(store_factory: Callable[..., FleetStore]) -> None:
    a, b = store_factory(), store_factory()
    devices = ["cam-1", "cam-2", "cam-3"]

    def batched() -> None:
        for _ in range(20):
            a.devices.update_many({d: (lambda r: replace(r, restarts=r.restarts + 1)) for d in devices})

    def single() -> None:
        for _ in range(20):
            for d in reversed(devices):
                b.devices.update(d, lambda r: replace(r, restarts=r.restarts + 1))

    threads = [threading.Thread(target=batched), threading.Thread(target=single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.device(d).restarts for d in devices] == [40, 40, 40]


def test_groups_merge_config_and_assignments(store: FleetStore, clock: Clock) -> None:
    _online(store, "cam-1", ("north",))
    _online(store, "cam-2")
    assert store.devices.assign("cam-2", "north", clock()) is True
    assert store.devices.assign("cam-2", "north", clock()) is False
    assert store.groups() == {"north": ["cam-1", "cam-2"]}
    assert [r.device_id for r in store.group_members("north")] == ["cam-1", "cam-2"]
    assert store.devices.unassign("cam-2", "north") is True
    assert store.devices.unassign("cam-1", "north") is False  # from the agent's own config: not ours to remove
    assert [r.device_id for r in store.list_devices(group="north")] == ["cam-1"]
    with pytest.raises(EmptyGroupError, match=r"'south' .* has no devices .*groups: north"):
        store.group_members("south")


def test_filters(store: FleetStore, clock: Clock) -> None:
    _online(store, "cam-1", version=1)
    clock.advance(20)
    _online(store, "cam-2", version=2)
    assert [r.device_id for r in store.list_devices(status="stale")] == ["cam-1"]
    assert [r.device_id for r in store.list_devices(version=2)] == ["cam-2"]


def test_telemetry_window_and_history(store: FleetStore, clock: Clock) -> None:
    t0 = clock() - clock() % 10_000
    batch = [("cam-1", TelemetrySample(t0 + i * 1000, {"fps": float(i)}, {"cat": 1}, "b1", i), t0 + i * 1000)
             for i in range(25)]
    batch.append(("cam-2", TelemetrySample(t0, {"fps": 100.0}, {}, "b2", 0), t0))
    store.telemetry.add(batch)
    window = store.telemetry_window("cam-1", t0 + 5000, t0 + 8000)
    assert [s.figures["fps"] for s in window] == [5.0, 6.0, 7.0]
    assert window[0].class_counts == {"cat": 1}
    assert store.telemetry.rebuild_history(t0, t0 + 30_000, 10_000) == 4
    hist = store.telemetry.history("cam-1", t0, t0 + 30_000)
    assert [(b - t0, n, f["fps"]) for b, n, f in hist] == [(0, 10, 4.5), (10_000, 10, 14.5), (20_000, 5, 22.0)]
    assert hist[0][2]["class_counts"] == {"cat": 10}
    # Rebuilding the same span again replaces, never doubles.
    store.telemetry.rebuild_history(t0, t0 + 30_000, 10_000)
    assert store.telemetry.counts() == (26, 4)
    assert store.telemetry.prune(t0 + 10_000, t0 + 10_000) == (11, 2)
    assert store.telemetry.counts() == (15, 2)


def test_issuer_sequence_grows_across_stores_and_threads(store_factory: Callable[..., FleetStore],
                                                         clock: Clock) -> None:
    a, b = store_factory(), store_factory()
    first = a.commands.next_seq("k1", clock())
    assert first == clock()
    got: list[int] = []
    lock = threading.Lock()

    def take(s: FleetStore) -> None:
        for _ in range(20):
            n = s.commands.next_seq("k1", clock())
            with lock:
                got.append(n)

    threads = [threading.Thread(target=take, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 80 and min(got) > first
    clock.advance(3600)
    assert a.commands.next_seq("k1", clock()) == clock()  # never below the clock
    assert b.commands.next_seq("k2", clock()) == clock()  # per key


def test_desired_keeps_previous_version(store: FleetStore) -> None:
    store.desired.set(DesiredEntry("group", "north", "digits", 3, set_ms=1))
    e = store.desired.set(DesiredEntry("group", "north", "digits", 4, set_ms=2))
    assert (e.version, e.previous_version) == (4, 3)
    assert store.desired.get("group", "north") == e
    store.desired.mark_published(Published("cam-1", "digits", 4, False, None, 77, 5))
    assert store.desired.published("cam-1") == Published("cam-1", "digits", 4, False, None, 77, 5)
    assert store.desired.clear("group", "north") is True
    assert store.desired.all() == []


def test_lease_single_holder_expiry_and_release(store_factory: Callable[..., FleetStore], clock: Clock) -> None:
    a, b = store_factory(), store_factory()
    assert a.leases.acquire("leader", "w1", clock(), 15_000) is True
    assert b.leases.acquire("leader", "w2", clock(), 15_000) is False
    clock.advance(10)
    assert a.leases.acquire("leader", "w1", clock(), 15_000) is True  # renewed
    clock.advance(10)
    assert b.leases.acquire("leader", "w2", clock(), 15_000) is False  # renewal moved the expiry
    clock.advance(6)
    assert b.leases.acquire("leader", "w2", clock(), 15_000) is True  # w1 stopped renewing
    assert a.leases.acquire("leader", "w1", clock(), 15_000) is False
    assert b.leases.release("leader", "w2") is True
    assert a.leases.acquire("leader", "w1", clock(), 15_000) is True


def test_racing_workers_get_one_lease(store_factory: Callable[..., FleetStore], clock: Clock) -> None:
    stores = [store_factory() for _ in range(4)]
    wins: list[str] = []
    barrier = threading.Barrier(len(stores))

    def race(i: int, s: FleetStore) -> None:
        barrier.wait()
        if s.leases.acquire("leader", f"w{i}", clock(), 15_000):
            wins.append(f"w{i}")

    threads = [threading.Thread(target=race, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_unusable_database_is_one_line() -> None:
    with pytest.raises(StorageError, match="only sqlite and postgresql"):
        FleetStore.open("mysql://x@y/z", "lab")
    with pytest.raises(StorageError, match="not a SQLAlchemy URL"):
        FleetStore.open("not a url", "lab")
    with pytest.raises(StorageError, match=r"postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db"):
        FleetStore.open("postgresql+psycopg://u:secret@127.0.0.1:1/db", "lab")


def test_a_history_pass_recomputes_only_the_buckets_whose_samples_changed(store: FleetStore, clock: Clock) -> None:
    """The leader recomputes recent buckets every pass to take in late commits; at 10,000 msg/s re-reading two
    minutes of samples each pass cost more than ingest itself, so unchanged buckets are left as they are."""
    t0 = clock() - clock() % 10_000
    store.telemetry.add([("cam-1", TelemetrySample(t0 + i * 1000, {"fps": float(i)}, {}, "b1", i), t0 + i * 1000)
                         for i in range(25)])
    assert store.telemetry.rebuild_history(t0, t0 + 30_000, 10_000) == 3
    assert store.telemetry.rebuild_history(t0, t0 + 30_000, 10_000) == 0
    # A sample committed late into the first bucket: that bucket (only) is recomputed and takes it in.
    store.telemetry.add([("cam-2", TelemetrySample(t0, {"fps": 100.0}, {}, "b2", 0), t0 + 500)])
    assert store.telemetry.rebuild_history(t0, t0 + 30_000, 10_000) == 2
    assert [(n, f["fps"]) for _, n, f in store.telemetry.history("cam-2", t0, t0 + 30_000)] == [(1, 100.0)]
    assert store.telemetry.counts() == (26, 4)


def _every_field(r: DeviceRecord, n: int) -> DeviceRecord:
    """A record with every stored field set (values that differ with n)."""
    return replace(
        r, reported_status="online" if n % 2 else "stopped", reported_groups=(f"g{n}", "north"), boot_id=f"boot-{n}",
        boot_ts_ms=1000 + n, restarts=n, first_seen_ms=10 + n, last_seen_ms=2000 + n, status_ms=3000 + n,
        state_ts_ms=4000 + n, agent_version=f"0.{n}.0", model_name=f"m{n}", model_version=n, model_variant=f"v{n}",
        model_backend="openvino", model_precision=f"int{n}", model_streams=(f"cam{n}", "cam9"),
        hardware={"cpu": f"c{n}", "n": n}, config_digest=f"d{n}",
        unsigned_commands=bool(n % 2), degraded={"outbox": f"full {n}"}, telemetry_interval_s=float(n),
        last_telemetry_ms=5000 + n, refused=n, last_refused=f"why {n}", last_refused_ms=6000 + n, shed=n,
        follow="desired", channel=f"ch{n}")


STORED = ("reported_status", "reported_groups", "boot_id", "boot_ts_ms", "restarts", "first_seen_ms", "last_seen_ms",
          "status_ms", "state_ts_ms", "agent_version", "model_name", "model_version", "model_variant",
          "model_backend", "model_precision", "model_streams", "hardware", "config_digest", "unsigned_commands",
          "degraded", "telemetry_interval_s",
          "last_telemetry_ms", "refused", "last_refused", "last_refused_ms", "shed", "follow", "channel")


def test_every_stored_field_survives_the_single_and_the_batched_write(store: FleetStore,
                                                                      store_factory: Callable[..., FleetStore]) -> None:
    store.devices.update("cam-1", lambda r: _every_field(r, 3))  # a new row, written whole
    first = store.devices.get("cam-1")
    assert first is not None and {k: getattr(first, k) for k in STORED} == {
        k: getattr(_every_field(first, 3), k) for k in STORED}
    for n in (4, 5):  # a batch write of a known row: the changed columns only, once read, once remembered
        with store.engine.begin() as conn:
            done = store.devices.update_in(conn, {"cam-1": lambda r, n=n: _every_field(r, n)})
        store.devices.remember(done)
        got = store_factory().devices.get("cam-1")  # read by another store: what the database holds
        assert got is not None and got.rev == n - 2
        assert {k: getattr(got, k) for k in STORED} == {k: getattr(_every_field(got, n), k) for k in STORED}
