"""The agent process's one wiring point: init, start, run, stop; tied to MQTT status and systemd."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from edge.backends.base import Hardware
from edge.backends.factory import backend_chain
from edge.command_auth import CommandAuth
from edge.commands import CommandRouter
from edge.config import AgentConfig
from edge.desired import DesiredSync
from edge.detection.service import DetectionService
from edge.errors import AgentError
from edge.events import EventEmitter
from edge.frame_loop import FrameLoop
from edge.frame_stats import FrameStats
from edge.ha_detection import DetectionAnnouncer
from edge.ha_discovery import HaDiscovery
from edge.ha_streams import StreamAnnouncer
from edge.hardware import detect_hardware
from edge.hot_swap import ModelSlot, ServingModel
from edge.link import Link, MqttLink, NullLink, Outbox
from edge.live_config import ConfigLoader, LiveConfig, Origin
from edge.log_setup import setup_logging
from edge.model_sync import ModelSync, load_trusted_keys
from edge.model_unit import ModelUnit, side_sync_config
from edge.pipeline import FrameResult
from edge.prometheus_exporter import PrometheusExporter
from edge.result_publisher import ResultPublisher
from edge.runtime_bench import ChosenModel
from edge.sensor.service import AnomalyService
from edge.sensor.window_shadow import WindowShadow
from edge.shadow import ShadowCheck, previous_version_loader
from edge.shadow_policy import ShadowPolicy
from edge.sources.base import FrameSource
from edge.sources.equip import equip
from edge.sources.factory import open_source
from edge.streams.config import model_streams, stream_detection, streams_of
from edge.streams.server import MultiStreamLoop, multi_stream_loop
from edge.supervise import Health, spawn
from edge.system_stats import SystemStats
from edge.systemd_notify import Notifier
from edge.task_claims import check_task_claim
from edge.telemetry import EnvelopeFactory, Telemetry, TelemetryLoop
from shared.config_loader import config_digest
from shared.errors import ConfigError, EdgeferryError
from shared.manifest import Manifest
from shared.metrics import METRICS
from shared.payloads import (
    BenchmarkPayload,
    DeployCommand,
    ModelInfo,
    PingCommand,
    RollbackCommand,
    SetConfigCommand,
    StatePayload,
)
from shared.store_open import open_store
from shared.topics import DeviceTopics
from shared.version import __version__

log = logging.getLogger(__name__)

STATUS_LOG_S = 5.0


class Agent:
    """Owns every component of the edge process and their lifecycle; nothing global."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        reload: ConfigLoader | None = None,
        hardware: Hardware | None = None,
        link: Link | None = None,
        notifier: Notifier | None = None,
        observer: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self.live = LiveConfig(cfg, reload)
        self.health = Health()

        self.hw = hardware or detect_hardware()
        self.topics = DeviceTopics(cfg.device.fleet, cfg.device.device_id)
        self.envelopes = EnvelopeFactory(cfg.device.device_id)
        self.notifier = notifier or Notifier()
        # Serving `streams:`, runtimes that compile for a batch size (OpenVINO) are told how many frames run together.
        self.backend = backend_chain(self.hw, cfg.backend, benchmark_on_install=cfg.sync.benchmark_on_install,
                                     max_batch=cfg.batching.max_size if cfg.streams else 1)
        store, trusted = open_store(cfg.sync.store), load_trusted_keys(cfg.sync.trusted_keys)
        self.sync = ModelSync(cfg.sync, store, trusted, self.backend, self.hw)
        self.slot = ModelSlot()
        # sync.model, and each model of `models:` on the streams that name it: synced, swapped and polled alike,
        # one switch at a time (one lock): the one-model-per-task check and the anomaly rule see a settled agent.
        switching = threading.Lock()
        self.primary = ModelUnit(self.sync, self.slot, self._switch_to, switching)
        self.side = {m.name: ModelUnit(ModelSync(side_sync_config(cfg.sync, m), store, trusted, self.backend,
                                                 self.hw), ModelSlot(), self._switch_to, switching)
                     for m in cfg.models}
        # Each model's streams (config order; `source:` alone is sync.model's stream 'default'), kept with the
        # streams in force.
        self._by_model = model_streams(cfg)
        for unit in self._units():  # a package of a task another model serves is refused before it loads
            unit.sync.admit = functools.partial(self._admit, unit)
        self.stats = FrameStats()
        self._outbox: Outbox | None = None
        if link is not None:
            self.link: Link = link
        elif cfg.mqtt.enabled:
            self._outbox = Outbox(cfg.mqtt.outbox_path, cfg.mqtt.outbox_max_messages, cfg.mqtt.outbox_synchronous)
            self.link = MqttLink(cfg.mqtt, self.topics, self._outbox, health=self.health)
        else:
            self.link = NullLink()
        # Object tracking, events, snapshots and zone counts while a detector serves (edge.detection.service).
        self.detection = DetectionService(cfg.detection, self.link, self.topics, self.envelopes,
                                          streams=stream_detection(cfg), single_source=not cfg.streams)
        # Sensor sources check rows before windowing (cfg.sensor.input); the served model's recipe is set on swap.
        # One source per stream (`source:` alone: the one named 'default'); the first is the sensor/anomaly source.
        self._sources = {s.name: open_source(s.source, cfg.sensor.input) for s in streams_of(cfg)}
        self._source = next(iter(self._sources.values()))
        # k-of-n anomaly alerts and sensor figures while an anomaly model serves (edge.sensor.service).
        self.anomaly = AnomalyService(cfg.sensor, self.link, self.topics, self.envelopes,
                                      refused=self._sensor_refused)
        self.results = ResultPublisher(
            EventEmitter(cfg.events, self.link, self.topics.events, self.envelopes), self.health, observer,
            detection=self.detection, anomaly=self.anomaly, primary=cfg.sync.model,
        )
        self.router = CommandRouter(self.link, self.topics, self.envelopes, auth=CommandAuth.from_config(cfg.device),
                                    queue_size=cfg.mqtt.command_queue, health=self.health)
        self.desired = DesiredSync.from_config(cfg.device, self.link, self.topics, deploy=self.deploy, pin=self._apply,
                                               served=self.sync.current_version, model=cfg.sync.model,
                                               health=self.health)
        # A device that applied a signed desired state is fleet-managed: in sync.follow 'auto' publishing moves it no
        # more (edge.model_sync.follow_mode).
        self.sync.managed = lambda: self.desired.seen
        self.sync.desired_channel = lambda: self.desired.channel
        self.system = SystemStats()
        self.telemetry = Telemetry(self.envelopes)
        self.exporter: PrometheusExporter | None = None
        self.telemetry_loop = TelemetryLoop(
            self.telemetry, self.link, self.topics.telemetry, cfg.mqtt.telemetry_interval_s, sinks=self._sinks(),
            health=self.health,
        )
        self._stop = threading.Event()
        # On with sync.shadow_every, or on a canary (its desired state says so) that can afford it (edge.shadow_policy).
        policy = ShadowPolicy(lambda: self.sync.cfg, lambda: self.desired.canary)
        self.shadow = ShadowCheck(policy.every, previous_version_loader(self.sync), self.health,
                                  budget_ms=policy.budget_ms,
                                  windows=WindowShadow(lambda: self.cfg.sensor.alerts, lambda: self.slot.current))
        self.frames: FrameLoop | MultiStreamLoop
        # A scheduler and batches per served model: each of `models:` over the streams that name it.
        self.side_frames: dict[str, MultiStreamLoop] = {}
        if cfg.streams:
            # Several streams: batched across streams; the shadow check samples sync.model's frames of every stream.
            by_model = self._by_model
            self.frames = multi_stream_loop(cfg, self._sources, self.slot, self.stats, self.results.submit,
                                            self._stop, self.health,
                                            on_removed=functools.partial(self._stream_removed, cfg.sync.model),
                                            sample=self.shadow.wants, on_sample=self.shadow.submit,
                                            streams=by_model[cfg.sync.model])
            for name, unit in self.side.items():
                self.side_frames[name] = multi_stream_loop(
                    cfg, self._sources, unit.slot, self.stats, self.results.submit, self._stop, self.health,
                    on_removed=functools.partial(self._stream_removed, name), streams=by_model[name],
                    component=f"frames-{name}")
        else:
            self.frames = FrameLoop(self.live, self._source, self.slot, self.stats, self.results.submit, self._stop,
                                    self.health, sample=self.shadow.wants, on_sample=self.shadow.submit)
        # Home Assistant's view of the streams (edge.ha_streams): announced with discovery, kept up with live changes.
        self.ha_streams = StreamAnnouncer(self.topics, __version__, cfg.mqtt.ha_discovery_prefix,
                                          [s.name for s in cfg.streams or []])
        # And of the detector's zones and labels (edge.ha_detection): removed ones withdrawn on a live change.
        self.ha_detection = DetectionAnnouncer(self.topics, __version__, cfg.mqtt.ha_discovery_prefix,
                                               lambda: self.detection.cfg,  # and each stream's zones, on its own:
                                               lambda: {s.name: self.detection.stream_cfg(s.name)
                                                        for s in self.cfg.streams})
        self._reload_requested = threading.Event()
        self._frame_thread: threading.Thread | None = None
        self._side_threads: list[threading.Thread] = []
        self._publisher: threading.Thread | None = None
        # The results thread drains until its None sentinel, also after a stop: it has its own never-set event.
        self._results_running = threading.Event()
        self._poll_thread: threading.Thread | None = None
        self._shadow_thread: threading.Thread | None = None
        self._published_degraded: dict[str, str] = {}
        self._started_at = time.monotonic()

    @property
    def cfg(self) -> AgentConfig:
        """The config in force now (set-config and SIGHUP change it through self.live)."""
        return self.live.cfg

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _sinks(self) -> list[Callable[[Mapping[str, float]], None]]:
        if self.cfg.daemon.prometheus_port is None:
            return []
        self.exporter = PrometheusExporter(
            {"fleet": self.topics.fleet, "device": self.topics.device_id}, histograms=self.stats.histograms
        )
        return [self.exporter.update]

    def start(self) -> None:
        """Serve the cached model, connect, start capture, polling and telemetry; then tell systemd."""
        log.info("edgeferry agent %s starting as %s/%s", __version__, self.topics.fleet, self.topics.device_id)
        self._started_at = time.monotonic()
        for unit in self._units():
            try:
                unit.recover()
            except EdgeferryError as exc:
                log.error("the cached %s model cannot be served: %s", unit.name, exc)
        self._register_commands()
        self._register_appliers()
        for source in (self.stats.values, self.slot.metrics, self._sync_metrics, self._frame_metrics,
                       self.router.metrics, self.link.metrics, self.system.sample, self.health.metrics,
                       self.desired.metrics, self.results.metrics, self.shadow.metrics):
            self.telemetry.add_source(source)
        self.telemetry.set_class_counts(self.results.class_counts)
        self.telemetry.set_zone_counts(self.results.zone_counts)
        if isinstance(self.frames, MultiStreamLoop):
            self.telemetry.set_stream_figures(self._stream_figures)
            if self.exporter is not None:
                self.exporter.set_streams(self._stream_figures)
        self._publish_state()
        if self.cfg.mqtt.ha_discovery:
            reported = {m.name for m in METRICS} - self.system.unreported()
            prefix = self.cfg.mqtt.ha_discovery_prefix
            discovery = HaDiscovery(self.link, self.topics, __version__, prefix, reported,  # zones, object events
                                    lambda: [*self.ha_detection.configs(),
                                             *self.ha_streams.configs()])  # and a sub-device per stream
            self.ha_streams.attach(discovery)
            self.ha_detection.attach(discovery)
            discovery.start()
        self.link.start()
        self.router.start()
        self.desired.start()
        equip(self._sources.values(), link=self.link)  # sensor readings by MQTT come through the broker
        if self.exporter is not None and self.cfg.daemon.prometheus_port is not None:
            port = self.exporter.start(self.cfg.daemon.prometheus_host, self.cfg.daemon.prometheus_port)
            log.info("Prometheus metrics on http://%s:%d/metrics", self.cfg.daemon.prometheus_host, port)
        self._publisher = spawn("results", self.results.run, self._results_running, self.health)
        self._frame_thread = spawn("frames", self.frames.run, self._stop, self.health)
        self._side_threads = [spawn(f"frames-{name}", loop.run, self._stop, self.health)
                              for name, loop in self.side_frames.items()]
        self._poll_thread = spawn("model-poll", self._poll, self._stop, self.health)
        self._shadow_thread = spawn("shadow", self.shadow.run_until(self._stop), self._stop, self.health)
        self.telemetry_loop.start()
        self.notifier.ready()
        self.notifier.status(self._status_line())

    def run(self) -> int:
        """Block until SIGTERM/SIGINT or the bounded run ends; feed the watchdog; reload on SIGHUP."""
        tick = min(1.0, self.notifier.watchdog_interval_s or 1.0)
        next_status = time.monotonic() + STATUS_LOG_S
        duration = self.cfg.run.duration_s
        deadline = None if duration is None else self._started_at + duration
        while not self._stop.wait(tick if deadline is None else max(0.0, min(tick, deadline - time.monotonic()))):
            self.notifier.watchdog()
            if deadline is not None and time.monotonic() >= deadline:
                log.info("run.duration_s (%.1f s) reached", duration)
                break
            if self.health.degraded() != self._published_degraded:
                self._publish_state()
            if time.monotonic() >= next_status:
                next_status += STATUS_LOG_S
                self._log_status()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            if self._frame_thread is not None and not self._frame_thread.is_alive():
                break
        return 0

    def stop(self) -> None:
        """Finish the current frame, flush telemetry, publish 'stopped', close everything."""
        self.notifier.stopping()
        self._stop.set()
        for thread in [self._frame_thread, *self._side_threads]:
            if thread is not None:
                thread.join(timeout=30)
        for loop in self._frame_loops():
            loop.stop()
        if self._publisher is not None and self._publisher.is_alive():
            self.results.finish()
            self._publisher.join(timeout=30)
        self.results.end_stream()
        if self._poll_thread is not None:
            self._poll_thread.join(timeout=10)
        if self._shadow_thread is not None:
            self._shadow_thread.join(timeout=10)
        self.shadow.close()
        self.results.events.finish()
        self.telemetry_loop.stop(final_report=True)
        self.router.stop()
        self.desired.stop()
        self.link.stop()
        if self._outbox is not None:
            self._outbox.close()
        if self.exporter is not None:
            self.exporter.stop()
        for unit in self._units():
            unit.slot.close()
        log.info("agent stopped after %d frames", self.stats.frames)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads; must be called from the main thread."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())

    def request_stop(self) -> None:
        """Ask run() to return (thread-safe)."""
        self._stop.set()

    # -- models ------------------------------------------------------------------------------------------------

    def _units(self) -> list[ModelUnit]:
        """sync.model's unit first, then `models:` in config order."""
        return [self.primary, *self.side.values()]

    def _unit(self, model: str | None) -> ModelUnit:
        """The unit a command names (None: sync.model); AgentError naming the served models otherwise."""
        if model is None or model == self.primary.name:
            return self.primary
        unit = self.side.get(model)
        if unit is None:
            names = ", ".join(u.name for u in self._units())
            raise AgentError(f"this device serves no model {model!r}; it serves {names}")
        return unit

    def _poll(self) -> None:
        """Poll each model's pointer (or pinned version) and switch when a newer verified model is there; a
        fleet-managed device (sync.follow) only converges sync.model to its pin here."""
        delay = 0.0 if any(u.slot.current is None for u in self._units()) else self.cfg.sync.poll_interval_s
        while not self._stop.wait(delay):
            for unit in self._units():
                try:
                    unit.poll_once()
                except EdgeferryError as exc:
                    log.warning("%s update skipped: %s", unit.name, exc)
            self.health.ok("model-poll")
            delay = self.cfg.sync.poll_interval_s

    def deploy(self, version: int | None, *, explicit: bool = True, allow_downgrade: bool = False,
               model: str | None = None) -> dict[str, Any]:
        """Install, verify, smoke-test and hot-swap a version; the served model is untouched on any failure."""
        return self._unit(model).deploy(version, explicit=explicit, allow_downgrade=allow_downgrade)

    def rollback(self, model: str | None = None) -> dict[str, Any]:
        """Switch back to the previous installed version."""
        return self._unit(model).rollback()

    def benchmark(self, model: str | None = None) -> dict[str, Any]:
        """Time every runtime candidate for the served version again and serve the fastest (the `benchmark` command)."""
        return self._unit(model).benchmark()

    def _switch_to(self, unit: ModelUnit, serving: ServingModel) -> dict[str, Any]:
        """Install a prepared model between two frames and tell the broker what is served and why."""
        sources = self._unit_sources(unit.name)
        equip(sources, window=serving.manifest.window)  # a sensor model: windowed by its recipe
        # An anomaly model's alerts use its threshold and channels; the model that had them stops them when it
        # changes task; another model's switch leaves them alone (edge.sensor.service decides).
        self.anomaly.configure(serving.manifest, serving.variant, sources[0].name if sources else unit.name,
                               model=unit.name)
        unit.slot.install(serving)
        if unit is self.primary:
            self.shadow.update(serving.version)
        self._publish_state()
        chosen = serving.model
        if unit is self.primary and isinstance(chosen, ChosenModel):
            self.link.publish_json(
                self.topics.benchmark, self.envelopes.stamp(BenchmarkPayload, result=chosen.result), retain=True
            )
        self.notifier.status(self._status_line())
        return {"model": unit.name, "version": serving.version, "variant": serving.variant.file,
                "precision": serving.variant.precision, "backend": serving.model.backend, "changed": True}

    def _served_tasks(self, unit: ModelUnit) -> dict[str, str]:
        """The task each other model serves now."""
        return {u.name: u.slot.current.decoder.task for u in self._units()
                if u is not unit and u.slot.current is not None}

    def _admit(self, unit: ModelUnit, manifest: Manifest) -> None:
        """A verified package may load unless another model serves its task."""
        check_task_claim(unit.name, manifest.task, self._served_tasks(unit))

    def _unit_sources(self, model: str) -> list[FrameSource]:
        """The sources of the streams a model serves."""
        return [self._sources[s.name] for s in self._by_model.get(model, []) if s.name in self._sources]

    def _sync_metrics(self) -> dict[str, float]:
        """Model sync figures of every model: a forged or failing package of any of them shows (counts add up)."""
        return _added_up((unit.sync.metrics() for unit in self._units()), peak={"pointer_expired"})

    def _sensor_refused(self) -> int:
        """Rows the anomaly model's sensor sources refused (the single source's while sync.model serves all)."""
        return sum(source.skipped for source in self._unit_sources(self.anomaly.owner or self.primary.name))

    def _frame_loops(self) -> list[FrameLoop | MultiStreamLoop]:
        return [self.frames, *self.side_frames.values()]

    def _frame_metrics(self) -> dict[str, float]:
        """drops, queue_depth and source_errors summed over every model's streams."""
        return _added_up(loop.metrics() for loop in self._frame_loops())

    def _stream_figures(self) -> dict[str, dict[str, float]]:
        """Every stream's figures, whichever model serves it."""
        out: dict[str, dict[str, float]] = {}
        for loop in self._frame_loops():
            if isinstance(loop, MultiStreamLoop):
                out.update(loop.stream_figures())
        return out

    # -- commands and config ----------------------------------------------------------------------------------

    def _register_commands(self) -> None:
        def deploy(cmd: DeployCommand) -> dict[str, Any]:
            unit = self._unit(cmd.model)
            if cmd.pin:
                if unit is not self.primary:
                    raise AgentError(f"a deploy pins only sync.model; pin {unit.name} with its `models:` entry's "
                                     "pinned_version in the config file")
                # Check first, then change anything: a deploy anti-rollback refuses must not leave its pin behind.
                if cmd.version is not None:
                    self.sync.check_rollback(cmd.version, allow_downgrade=cmd.allow_downgrade)
                self._apply({"sync.pinned_version": cmd.version})
            return unit.deploy(cmd.version, explicit=cmd.version is not None, allow_downgrade=cmd.allow_downgrade)

        def rollback(cmd: RollbackCommand) -> dict[str, Any]:
            return self.rollback(cmd.model)

        def set_config(cmd: SetConfigCommand) -> dict[str, Any]:
            return self._apply(cmd.values)

        def ping(cmd: PingCommand) -> dict[str, Any]:
            return {"model": self._model_info().model_dump(), "uptime_s": round(time.monotonic() - self._started_at, 1),
                    "models": [self._model_info(unit).model_dump() for unit in self.side.values()]}

        self.router.register("deploy", deploy)
        self.router.register("rollback", rollback)
        self.router.register("set-config", set_config)
        self.router.register("ping", ping)
        self.router.register("benchmark", lambda cmd: self.benchmark(cmd.model))

    def reload(self) -> dict[str, Any]:
        """SIGHUP: re-read file, environment and flags (plus set-config changes) and apply what can change live."""
        self.notifier.reloading()
        try:
            result = self._apply({}, "reload")
        except EdgeferryError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            result = {"error": str(exc)}
        self.notifier.ready()
        return result

    def _apply(self, values: Mapping[str, Any], origin: Origin = "command") -> dict[str, Any]:
        """One change through LiveConfig: all of it applies, or none of it and the error says why."""
        result = self.live.apply(values, origin)
        self._publish_state()
        return result

    def _register_appliers(self) -> None:
        """What each live key changes; each prepares fully (key files included) before anything takes effect."""

        def events(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            if not any(k.startswith("events.") for k in live):
                return None
            emitter = EventEmitter(new.events, self.link, self.topics.events, self.envelopes)

            def commit() -> None:
                self.results.events = emitter

            return commit

        def logging_(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            if not any(k.startswith("daemon.") for k in live):
                return None
            return lambda: setup_logging(new.daemon.log_level, new.daemon.log_json)

        def sync(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            keys = [k.removeprefix("sync.") for k in live if k.startswith("sync.")]
            if not keys and "models" not in live:
                return None
            if {m.name for m in new.models} != set(self.side):
                raise ConfigError("`models:` adds or removes a model only with a restart (each has its own sync, "
                                  "slot and scheduler, made at start); a model's channel and pinned_version change "
                                  "live")
            trusted = load_trusted_keys(new.sync.trusted_keys)
            updated = self.sync.cfg.model_copy(update={k: getattr(new.sync, k) for k in keys})
            # A model of `models:` takes the live sync.* settings but its own entry's channel and pin.
            side = {m.name: side_sync_config(updated, m) for m in new.models}

            def commit() -> None:
                self.sync.cfg = updated
                self.sync.trusted = trusted
                for name, unit in self.side.items():
                    unit.sync.cfg, unit.sync.trusted = side[name], trusted

            return commit

        def detection(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            if not any(k.startswith("detection.") for k in live):
                return None
            cfg, per_stream = new.detection, stream_detection(new)

            def commit() -> None:
                # Followed objects end under the old settings; tracking restarts under the new.
                self.detection.reconfigure(cfg)
                self.detection.set_streams(per_stream)
                self.ha_detection.change()

            return commit

        def streams(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            if "streams" not in live:
                return None
            frames = self.frames
            if not isinstance(frames, MultiStreamLoop) or not new.streams:
                raise ConfigError("`streams:` changes live only on an agent started with `streams:`, and keeps at "
                                  "least one stream; restart the agent to switch between `source:` and `streams:`")
            loops = {self.primary.name: frames, **self.side_frames}
            by_model = model_streams(new)
            unserved = sorted(set(by_model) - set(loops))
            if unserved:
                raise ConfigError(f"streams name model(s) {', '.join(unserved)} this agent does not serve yet; "
                                  "`models:` changes need a restart")
            # A stream moved to another model starts anew there (its source too) and leaves its old model's loop.
            fresh = {s.name: open_source(s.source, new.sensor.input) for model, loop in loops.items()
                     for s in by_model.get(model, []) if s.name in loop.changes(by_model.get(model, []))}
            per_stream = stream_detection(new)

            def commit() -> None:
                self._by_model = by_model
                self._add_sources(fresh)
                self._sources = {s.name: fresh.get(s.name) or self._sources[s.name] for s in new.streams}
                self.detection.set_streams(per_stream, [s.name for s in new.streams])
                for model, loop in loops.items():
                    mine = by_model.get(model, [])
                    loop.change_streams(mine, {s.name: fresh[s.name] for s in mine if s.name in fresh})
                self.ha_streams.change([s.name for s in new.streams])

            return commit

        def sensor(new: AgentConfig, live: list[str]) -> Callable[[], None] | None:
            if not any(k.startswith("sensor.alerts.") for k in live):
                return None
            cfg = new.sensor

            def commit() -> None:
                # An open alert ends under the old rule; the served model's windows are judged by the new one.
                self.anomaly.reconfigure(cfg)

            return commit

        for applier in (events, logging_, sync, detection, sensor, streams):
            self.live.on_change(applier)

    def _add_sources(self, sources: Mapping[str, FrameSource]) -> None:
        """New streams' sources get what the running ones got: their model's sensor recipe, the broker."""
        for unit in self._units():
            current = unit.slot.current
            mine = [sources[s.name] for s in self._by_model.get(unit.name, []) if s.name in sources]
            equip(mine, None if current is None else current.manifest.window, self.link)

    def _stream_removed(self, model: str, name: str) -> None:
        """A stream `model` served was removed or moved (its frame thread): once its last results are out, what
        that model's task followed there ends (its objects or open alert; another model's stay)."""
        self.results.drop_stream(model, name)

    # -- reporting ---------------------------------------------------------------------------------------------

    def _model_info(self, unit: ModelUnit | None = None) -> ModelInfo:
        unit = unit or self.primary
        # Which streams it serves, once models share the streams out.
        streams = [s.name for s in self._by_model.get(unit.name, [])] if self.side else []
        current = unit.slot.current
        if current is None:
            return ModelInfo(name=unit.name, streams=streams)
        chosen = current.model if isinstance(current.model, ChosenModel) else None
        return ModelInfo(
            streams=streams,
            name=current.manifest.name,
            version=current.version,
            variant=current.variant.file,
            precision=current.variant.precision,
            backend=current.model.backend,
            device=chosen.device if chosen else None,
            inference_precision=chosen.inference_precision if chosen else None,
            choice_source=chosen.result.source if chosen else None,
            choice_target=chosen.result.target if chosen else None,
        )

    def _publish_state(self) -> None:
        degraded = self.health.degraded()
        self._published_degraded = degraded
        state = self.envelopes.stamp(
            StatePayload,
            agent_version=__version__,
            model=self._model_info(),
            hardware={
                "cpu_features": sorted(f for f in self.hw.cpu_features if f in {"avx2", "avx512f", "avx512_vnni",
                                                                                 "avx_vnni", "neon", "asimd"}),
                "cuda": self.hw.cuda,
                "gpu": self.hw.gpu_name,
                "compute_capability": self.hw.compute_capability,
                "tensorrt": self.hw.tensorrt_version,
                "backends": self.backend.name,
                "runtime_devices": self.backend.devices(),
            },
            config_digest=config_digest(self.cfg),
            unsigned_commands=self.cfg.device.allow_unsigned_commands,
            degraded=degraded,
            groups=list(self.cfg.device.groups),
            telemetry_interval_s=self.cfg.mqtt.telemetry_interval_s,
            desired_version=self.desired.version,
            follow=self.sync.mode,
            channel=self.sync.channel,
            models=[self._model_info(unit) for unit in self.side.values()],
        )
        self.link.publish_json(self.topics.state, state, retain=True)

    def _log_status(self) -> None:
        """One human line every few seconds: what is served, how fast, and the latest result."""
        v = self.stats.values()
        last = self.results.last
        seen = f"; last frame {last.index}: {last.summary()}" if last else ""
        log.info("%s: %.1f fps, %d frames, e2e p50 %.2f ms%s", self._status_line(), v.get("fps", 0.0),
                 int(v.get("frames", 0)), v.get("e2e_ms_p50", 0.0), seen)

    def _status_line(self) -> str:
        info = self._model_info()
        return f"serving {info.name} v{info.version} ({info.precision})" if info.version else "waiting for a model"


def _added_up(parts: Iterable[Mapping[str, float]], peak: Collection[str] = ()) -> dict[str, float]:
    """Figures of several models as one agent's: counts add up; a `peak` figure (a 0/1 flag) is the highest."""
    out: dict[str, float] = {}
    for figures in parts:
        for key, value in figures.items():
            out[key] = max(out.get(key, 0.0), value) if key in peak else out.get(key, 0.0) + value
    return out
