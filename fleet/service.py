"""`edgeferry fleet serve`: the one wiring point of a control-plane worker, with start() and stop() like the agent.

Every worker ingests (its share of telemetry through the shared subscription, all of status/state); the worker
holding the `leader` lease also downsamples and prunes history, republishes desired state that changed, and runs
the rollout controller. A worker killed with -9 stops renewing; another takes the lease once it expires.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fleet.command_sender import CommandSender
from fleet.config import FleetConfig
from fleet.db.store import FleetStore
from fleet.desired import DesiredPublisher
from fleet.ingest import Ingest, subscriptions
from fleet.mqtt_client import FleetMqtt
from fleet.supervise import LoopHealth, every
from shared.signing import load_private_key

log = logging.getLogger(__name__)

LEADER_LEASE = "leader"
# History buckets this recent are recomputed on each pass, taking in samples that arrived late.
HISTORY_REBUILD_MS = 120_000
# A bucket is computed once it ended this long ago: computing the open one on every pass read each sample twice
# (at 10,000 msg/s the history pass cost as much CPU as the ingest). A later sample recomputes the bucket.
HISTORY_CLOSED_MS = 2_000


class _Notifier:
    """systemd READY/WATCHDOG/STOPPING through sdnotify; a no-op outside systemd or without sdnotify."""

    def __init__(self) -> None:
        self._n: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            try:
                import sdnotify

                self._n = sdnotify.SystemdNotifier()
            except ImportError:
                log.warning("NOTIFY_SOCKET is set but sdnotify is not installed: no systemd notifications")

    def send(self, msg: str) -> None:
        if self._n is not None:
            self._n.notify(msg)


class FleetService:
    """One control-plane worker."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.worker_id = cfg.lease.worker_id
        self.health = LoopHealth()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._leader = threading.Event()
        self._notify = _Notifier()
        self.store: FleetStore | None = None
        self.ingest: Ingest | None = None
        self.mqtt: FleetMqtt | None = None
        self.desired: DesiredPublisher | None = None
        self.sender: CommandSender | None = None
        self.controller: Any = None
        self.metrics: Any = None
        self.metrics_port: int | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this worker holds the leader lease now."""
        return self._leader.is_set()

    def start(self) -> None:
        """Open storage, connect to the broker, start the loops, tell systemd READY."""
        self.init_store()
        self.init_mqtt()
        self.init_commands()
        self.init_controller()
        self.init_metrics()
        self.start_loops()
        self._notify.send("READY=1")
        log.info("fleet %s: worker %s serving (database %s, broker %s)", self.cfg.fleet, self.worker_id,
                 self.store.engine.url.render_as_string(hide_password=True) if self.store else "?",
                 self.mqtt.where if self.mqtt else "?")

    def init_store(self) -> None:
        """Open the database (schema created on first use)."""
        self.store = FleetStore.open(self.cfg.database.url, self.cfg.fleet, self.cfg.database.pool_size)
        ing = self.cfg.ingest
        self.ingest = Ingest(self.store, ing.max_batch, ing.max_queue_bytes, ing.device_queue_bytes,
                             self.cfg.registry.max_unassigned_devices, ing.max_queue_messages)

    def init_mqtt(self) -> None:
        """Connect with the plain status/state and shared telemetry/reply subscriptions."""
        assert self.ingest is not None
        self.mqtt = FleetMqtt(self.cfg.broker, client_id=f"edgeferry-fleet-{self.worker_id}"[:64],
                              on_message=self.ingest.offer,
                              filters=subscriptions(self.cfg.fleet, self.cfg.broker.share_group))
        self.mqtt.connect()

    def init_commands(self) -> None:
        """The fleet key signs desired state and commands; without one this worker only observes."""
        assert self.store is not None and self.mqtt is not None
        if self.cfg.commands.key is None:
            log.warning("commands.key is not set: this worker observes only (no desired state, no commands)")
            return
        key = load_private_key(self.cfg.commands.key)
        self.desired = DesiredPublisher(self.store, self.mqtt, key)
        self.sender = CommandSender(self.store, self.mqtt, key, self.cfg.commands.expires_in_s)

    def init_controller(self) -> None:
        """The rollout controller (fleet/rollout), ticked by the leader."""
        if self.sender is None or self.desired is None:
            return
        try:
            from fleet.rollout.controller import RolloutController  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return
        assert self.store is not None
        # F2 wiring: the controller's constructor is defined in fleet/rollout/controller.py.
        self.controller = RolloutController(self.store, self.sender, self.desired, self.store.clock)

    def init_metrics(self) -> None:
        """Prometheus /metrics (fleet.metrics_export) when metrics.port is set; every worker serves the same view."""
        if self.cfg.metrics.port is None:
            return
        from fleet.metrics_export import FleetMetricsExporter, StoreSnapshot

        assert self.store is not None
        self.metrics = FleetMetricsExporter(StoreSnapshot(self.store), self.cfg.metrics.max_device_series)
        self.metrics_port = self.metrics.start(self.cfg.metrics.host, self.cfg.metrics.port)

    def start_loops(self) -> None:
        """Writer, lease, maintenance and controller loops, each supervised."""
        cfg = self.cfg
        loops: list[tuple[str, Callable[[], float], Callable[[], None]]] = [
            ("ingest", lambda: 0.0, self._ingest_once),
            ("lease", lambda: cfg.lease.renew_s, self._lease_once),
            ("maintenance", lambda: cfg.registry.maintenance_interval_s, self._maintain_once),
        ]
        if self.controller is not None:
            loops.append(("rollout-controller", lambda: cfg.controller.interval_s, self._controller_once))
        self._threads = [every(n, i, b, self._stop, self.health) for n, i, b in loops]

    def _ingest_once(self) -> None:
        assert self.ingest is not None
        self.ingest.drain(0.2)

    def _lease_once(self) -> None:
        assert self.store is not None
        held = self.store.leases.acquire(LEADER_LEASE, self.worker_id, self.store.clock(),
                                         int(self.cfg.lease.ttl_s * 1000))
        if held and not self._leader.is_set():
            log.info("worker %s is the leader now (rollout controller and maintenance run here)", self.worker_id)
            self._leader.set()
        elif not held and self._leader.is_set():
            log.warning("worker %s lost the leader lease", self.worker_id)
            self._leader.clear()
        self._notify.send("WATCHDOG=1")

    def _maintain_once(self) -> None:
        if not self.is_leader:
            return
        assert self.store is not None
        now = self.store.clock()
        reg = self.cfg.registry
        bucket = int(reg.history_bucket_s * 1000)
        self.store.telemetry.rebuild_history(now - HISTORY_REBUILD_MS, now - HISTORY_CLOSED_MS, bucket)
        self.store.telemetry.prune(now - int(reg.window_s * 1000), now - int(reg.history_retention_s * 1000))
        if reg.expire_after_s is not None:
            gone = self.store.expire_devices(int(reg.expire_after_s * 1000))
            if gone:
                log.info("forgot %d device(s) silent for over %.0f s: %s", len(gone), reg.expire_after_s,
                         ", ".join(gone[:10]) + (" ..." if len(gone) > 10 else ""))
        if reg.tombstone_retention_s is not None:
            pruned = self.store.tombstones.prune(now - int(reg.tombstone_retention_s * 1000))
            if pruned:
                log.info("pruned %d removed device tombstone(s) older than %.0f s", pruned,
                         reg.tombstone_retention_s)
        if self.desired is not None:
            self.desired.reconcile()

    def _controller_once(self) -> None:
        if self.is_leader and self.controller is not None:
            self.controller.tick()

    def request_stop(self) -> None:
        """Ask run() to return (signal handlers call this)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop cleanly."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Block until a stop is requested."""
        while not self._stop.wait(1.0):
            pass

    def stop(self) -> None:
        """Stop the loops, store what is queued, give the lease up so another worker leads at once, disconnect."""
        self._notify.send("STOPPING=1")
        self._stop.set()
        if self.metrics is not None:
            self.metrics.stop()
        for t in self._threads:
            t.join(timeout=15)
        if self.mqtt is not None:
            self.mqtt.close()
        if self.ingest is not None:
            while self.ingest.drain(0):
                pass
        if self.store is not None:
            if self._leader.is_set():
                self.store.leases.release(LEADER_LEASE, self.worker_id)
                self._leader.clear()
            self.store.close()
        log.info("worker %s stopped", self.worker_id)
