"""/metrics of `fleet serve`: devices by status and version, rollout stages and gates, fleet and per-device figures.

Every name is derived from the metric table (shared.metrics) or declared once in `FLEET_FAMILIES` below, in base
units like the agent's exporter. Label cardinality is bounded so a 10,000-device fleet cannot blow up Prometheus:

- per-device series (`edgeferry_device_*`, labels fleet and device) exist for at most `max_device_series` devices:
  devices in an active rollout first, then by device id, so the chosen set is stable between scrapes; the count
  left out is `edgeferry_fleet_device_series_omitted`. Fleet-wide summaries (`edgeferry_fleet_*`) always cover
  every device, so aggregates never depend on the cap;
- per-stream series (`edgeferry_device_stream_*`, labels fleet, device and stream) only for those devices, at most
  fleet.db.streams.MAX_STREAMS_PER_DEVICE streams each (bounded at ingest); a scrape reads only their streams;
- model versions: at most `max_version_series` (model, version) pairs, the rest summed under version="other";
- rollouts: every active one plus the `max_finished_rollouts` most recent finished ones.

The agent's own stage-latency histograms are not re-exported: they stay on each agent's /metrics.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

from fleet.db import sanitize
from fleet.db.schema import telemetry_samples
from fleet.db.store import FleetStore
from fleet.errors import FleetConfigError
from fleet.registry import DeviceRecord
from fleet.rollout.store import RolloutRepository, RolloutRow
from shared.metrics import METRICS
from shared.metrics import Metric as TableMetric
from shared.streams import STREAM_METRICS

log = logging.getLogger(__name__)

DEVICE_STATUSES = ("online", "stopped", "offline", "stale", "unknown")
ROLLOUT_ACTIVE = frozenset({"running", "paused", "pending", "rolling_back"})
OTHER_VERSION = "other"
DEFAULT_MAX_DEVICE_SERIES = 200
DEFAULT_MAX_VERSION_SERIES = 20
DEFAULT_MAX_FINISHED_ROLLOUTS = 5
_PREFIX = "edgeferry_"


@dataclass(frozen=True)
class Family:
    """One control-plane metric family that the metric table does not derive."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]


FLEET_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("edgeferry_fleet_devices", "gauge", "Devices known to the control plane, by status",
               ("fleet", "status")),
        Family("edgeferry_fleet_devices_by_version", "gauge",
               "Devices by the model version they report serving (version 'other' sums the versions over the cap)",
               ("fleet", "model", "version")),
        Family("edgeferry_fleet_device_series_omitted", "gauge",
               "Devices whose per-device series were left out to bound label cardinality", ("fleet",)),
        Family("edgeferry_fleet_devices_reporting", "gauge",
               "Online devices whose last telemetry carried the figure (the population of the fleet summaries)",
               ("fleet", "figure")),
        Family("edgeferry_device_online", "gauge", "1 while the device's status is online, else 0",
               ("fleet", "device")),
        Family("edgeferry_device_last_seen_timestamp_seconds", "gauge",
               "Unix time of the last message the control plane received from the device", ("fleet", "device")),
        Family("edgeferry_device_ingest_refused_total", "counter",
               "Messages of the device refused at ingest (unparsable, out of the metric table's range, refused by "
               "the database): a misbehaving device", ("fleet", "device")),
        Family("edgeferry_device_ingest_shed_total", "counter",
               "Messages of the device shed unread: it sent more than its share of the ingest queue",
               ("fleet", "device")),
        Family("edgeferry_fleet_ingest_refused_total", "counter",
               "Messages refused at ingest, summed over every device of the registry", ("fleet",)),
        Family("edgeferry_fleet_ingest_shed_total", "counter",
               "Messages shed from the ingest queue, summed over every device of the registry", ("fleet",)),
        Family("edgeferry_rollout_info", "gauge", "1 per rollout, labelled with what it deploys and its state",
               ("rollout", "fleet", "group", "model", "version", "state")),
        Family("edgeferry_rollout_stage", "gauge", "Current stage of the rollout, counted from 1",
               ("rollout", "fleet")),
        Family("edgeferry_rollout_stages", "gauge", "Number of stages in the rollout's plan", ("rollout", "fleet")),
        Family("edgeferry_rollout_devices", "gauge", "Devices of the rollout by their state in it",
               ("rollout", "fleet", "state")),
        Family("edgeferry_rollout_gate_value", "gauge",
               "A gate's latest figure per cohort (canary or control), in the gate's own terms (the figure's MQTT "
               "unit, or a ratio or difference to control) so it compares with the threshold as the gate does",
               ("rollout", "fleet", "gate", "cohort")),
        Family("edgeferry_rollout_gate_threshold", "gauge", "A gate's threshold, in the gate's own terms",
               ("rollout", "fleet", "gate")),
    )
}


def device_name(m: TableMetric) -> str:
    """The control plane's per-device copy of a table metric: edgeferry_device_<...> (agent: edgeferry_<...>)."""
    return "edgeferry_device_" + m.prometheus_name.removeprefix(_PREFIX)


def fleet_name(m: TableMetric) -> str:
    """The fleet-wide summary of a table metric: edgeferry_fleet_<...> (gauges: label stat=min|mean|max)."""
    return "edgeferry_fleet_" + m.prometheus_name.removeprefix(_PREFIX)


@dataclass(frozen=True)
class DeviceView:
    """What the exporter needs of one device record (fleet.registry's record is adapted to this)."""

    device_id: str
    fleet: str
    status: str
    model: str | None = None
    version: int | None = None
    last_seen_ms: int | None = None
    in_rollout: bool = False
    # Latest telemetry under the metric table's MQTT names and units.
    figures: Mapping[str, float] = field(default_factory=dict)
    # Messages refused at ingest and shed from the ingest queue (fleet.ingest).
    refused: int = 0
    shed: int = 0
    # A multi-stream agent's latest per-stream figures (fleet.db.streams): stream -> figures.
    streams: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def device_view(record: DeviceRecord, figures: Mapping[str, float], in_rollout: bool = False,
                streams: Mapping[str, Mapping[str, float]] | None = None) -> DeviceView:
    """A registry record (status as of the scrape) and its latest telemetry figures, as the exporter reads them."""
    return DeviceView(record.device_id, record.fleet, record.status, record.model_name, record.model_version,
                      record.last_seen_ms, in_rollout, dict(figures), record.refused, record.shed,
                      dict(streams or {}))


@dataclass(frozen=True)
class GateView:
    """One gate figure of a rollout for one cohort, as the rollout's last analysis computed it."""

    gate: str
    cohort: str
    value: float | None
    threshold: float | None


@dataclass(frozen=True)
class RolloutView:
    """What the exporter needs of one rollout."""

    rollout_id: str
    fleet: str
    group: str
    model: str
    version: int
    state: str
    stage: int
    stages: int
    devices: Mapping[str, int] = field(default_factory=dict)
    gates: Sequence[GateView] = ()
    updated_ms: int = 0


# Device ids -> their per-stream figures (stream -> figures), read for the devices a scrape gives series only.
StreamsReader = Callable[[Sequence[str]], Mapping[str, Mapping[str, Mapping[str, float]]]]


@dataclass(frozen=True)
class FleetSnapshot:
    """Everything one scrape exports."""

    devices: Sequence[DeviceView]
    rollouts: Sequence[RolloutView] = ()
    # Where the shown devices' per-stream figures come from (StoreSnapshot: the fleet database), so a
    # 10,000-camera fleet's streams are not read to show 200 devices; None: each DeviceView carries its own.
    streams_of: StreamsReader | None = None


SnapshotSource = Callable[[], FleetSnapshot]

def _finite(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _gauge(name: str, labels: Sequence[str] | None = None) -> GaugeMetricFamily:
    fam = FLEET_FAMILIES[name]
    return GaugeMetricFamily(name, fam.help, labels=list(labels if labels is not None else fam.labels))


def _devices_with_series(devices: Sequence[DeviceView], cap: int) -> list[DeviceView]:
    ranked = sorted(devices, key=lambda d: (not d.in_rollout, d.fleet, d.device_id))
    return ranked[: max(cap, 0)]


def _status_families(devices: Sequence[DeviceView], cap_versions: int) -> Iterator[Metric]:
    by_status = _gauge("edgeferry_fleet_devices")
    counts = Counter((d.fleet, d.status if d.status in DEVICE_STATUSES else "unknown") for d in devices)
    for fleet in sorted({d.fleet for d in devices}):
        for status in DEVICE_STATUSES:
            by_status.add_metric([fleet, status], counts[(fleet, status)])
    yield by_status
    by_version = _gauge("edgeferry_fleet_devices_by_version")
    versions = Counter((d.fleet, d.model or "", str(d.version) if d.version is not None else "none") for d in devices)
    kept = {k for k, _ in sorted(versions.items(), key=lambda kv: (-kv[1], kv[0]))[: max(cap_versions, 0)]}
    other: Counter[tuple[str, str]] = Counter()
    for key, n in sorted(versions.items()):
        if key in kept:
            by_version.add_metric(list(key), n)
        else:
            other[(key[0], key[1])] += n
    for (fleet, model), n in sorted(other.items()):
        by_version.add_metric([fleet, model, OTHER_VERSION], n)
    yield by_version


def _fleet_summaries(devices: Sequence[DeviceView]) -> Iterator[Metric]:
    reporting = _gauge("edgeferry_fleet_devices_reporting")
    fleets = sorted({d.fleet for d in devices})
    for m in METRICS:
        factor = m.prometheus_factor
        family: GaugeMetricFamily | CounterMetricFamily
        if m.kind == "counter":
            family = CounterMetricFamily(fleet_name(m).removesuffix("_total"),
                                         f"{m.description}: sum over every device's last report", labels=["fleet"])
        else:
            family = GaugeMetricFamily(fleet_name(m), f"{m.description}: min/mean/max over online devices",
                                       labels=["fleet", "stat"])
        for fleet in fleets:
            pool = [d for d in devices if d.fleet == fleet]
            if m.kind == "counter":
                vals = [d.figures[m.name] for d in pool if _finite(d.figures.get(m.name, math.nan))]
                if vals:
                    family.add_metric([fleet], sum(vals) * factor)
                continue
            vals = [d.figures[m.name] for d in pool
                    if d.status == "online" and _finite(d.figures.get(m.name, math.nan))]
            reporting.add_metric([fleet, m.name], len(vals))
            if vals:
                family.add_metric([fleet, "min"], min(vals) * factor)
                family.add_metric([fleet, "mean"], sum(vals) / len(vals) * factor)
                family.add_metric([fleet, "max"], max(vals) * factor)
        yield family
    yield reporting


def _counter(name: str) -> CounterMetricFamily:
    fam = FLEET_FAMILIES[name]
    return CounterMetricFamily(name.removesuffix("_total"), fam.help, labels=list(fam.labels))


def _ingest_families(devices: Sequence[DeviceView], chosen: Sequence[DeviceView]) -> Iterator[Metric]:
    """Refused and shed messages per device (the capped set) and per fleet (every device)."""
    for kind in ("refused", "shed"):
        per_fleet, per_device = _counter(f"edgeferry_fleet_ingest_{kind}_total"), \
            _counter(f"edgeferry_device_ingest_{kind}_total")
        for fleet in sorted({d.fleet for d in devices}):
            per_fleet.add_metric([fleet], sum(getattr(d, kind) for d in devices if d.fleet == fleet))
        for d in chosen:
            per_device.add_metric([d.fleet, d.device_id], getattr(d, kind))
        yield per_fleet
        yield per_device


def _device_families(devices: Sequence[DeviceView], cap: int, streams_of: StreamsReader | None) -> Iterator[Metric]:
    chosen = _devices_with_series(devices, cap)
    if streams_of is not None and chosen:
        found = streams_of([d.device_id for d in chosen])
        chosen = [replace(d, streams=found[d.device_id]) if d.device_id in found else d for d in chosen]
    yield from _ingest_families(devices, chosen)
    omitted = _gauge("edgeferry_fleet_device_series_omitted")
    left = Counter(d.fleet for d in devices) - Counter(d.fleet for d in chosen)
    for fleet in sorted({d.fleet for d in devices}):
        omitted.add_metric([fleet], left[fleet])
    yield omitted
    online, seen = _gauge("edgeferry_device_online"), _gauge("edgeferry_device_last_seen_timestamp_seconds")
    for d in chosen:
        online.add_metric([d.fleet, d.device_id], 1.0 if d.status == "online" else 0.0)
        if d.last_seen_ms is not None:
            seen.add_metric([d.fleet, d.device_id], d.last_seen_ms / 1000.0)
    yield online
    yield seen
    for m in METRICS:
        family: GaugeMetricFamily | CounterMetricFamily
        if m.kind == "counter":
            family = CounterMetricFamily(device_name(m).removesuffix("_total"), m.description,
                                         labels=["fleet", "device"])
        else:
            family = GaugeMetricFamily(device_name(m), m.description, labels=["fleet", "device"])
        for d in chosen:
            v = d.figures.get(m.name)
            if v is not None and _finite(v):
                family.add_metric([d.fleet, d.device_id], v * m.prometheus_factor)
        yield family
    yield from _stream_families(chosen)


def stream_device_name(m: TableMetric) -> str:
    """The control plane's copy of an agent's per-stream figure: edgeferry_device_stream_<...> (label stream)."""
    return "edgeferry_device_stream_" + m.prometheus_name.removeprefix(_PREFIX)


def _stream_families(chosen: Sequence[DeviceView]) -> Iterator[Metric]:
    """Per-stream figures of the devices with series (streams per device are bounded at ingest)."""
    labels = ["fleet", "device", "stream"]
    for m in STREAM_METRICS:
        family: GaugeMetricFamily | CounterMetricFamily
        if m.kind == "counter":
            family = CounterMetricFamily(stream_device_name(m).removesuffix("_total"), m.description, labels=labels)
        else:
            family = GaugeMetricFamily(stream_device_name(m), m.description, labels=labels)
        for d in chosen:
            for stream, figures in sorted(d.streams.items()):
                v = figures.get(m.name)
                if v is not None and _finite(v):
                    family.add_metric([d.fleet, d.device_id, stream], v * m.prometheus_factor)
        yield family


def _rollout_families(rollouts: Sequence[RolloutView], max_finished: int) -> Iterator[Metric]:
    active = [r for r in rollouts if r.state in ROLLOUT_ACTIVE]
    finished = sorted((r for r in rollouts if r.state not in ROLLOUT_ACTIVE), key=lambda r: -r.updated_ms)
    shown = sorted(active + finished[: max(max_finished, 0)], key=lambda r: r.rollout_id)
    info, stage, stages = _gauge("edgeferry_rollout_info"), _gauge("edgeferry_rollout_stage"), \
        _gauge("edgeferry_rollout_stages")
    devices, value, threshold = _gauge("edgeferry_rollout_devices"), _gauge("edgeferry_rollout_gate_value"), \
        _gauge("edgeferry_rollout_gate_threshold")
    for r in shown:
        info.add_metric([r.rollout_id, r.fleet, r.group, r.model, str(r.version), r.state], 1.0)
        stage.add_metric([r.rollout_id, r.fleet], r.stage)
        stages.add_metric([r.rollout_id, r.fleet], r.stages)
        for state, n in sorted(r.devices.items()):
            devices.add_metric([r.rollout_id, r.fleet, state], n)
        thresholds: dict[str, float] = {}
        for g in r.gates:
            if g.value is not None and _finite(g.value):
                value.add_metric([r.rollout_id, r.fleet, g.gate, g.cohort], g.value)
            if g.threshold is not None and _finite(g.threshold):
                thresholds[g.gate] = g.threshold
        for gate, t in sorted(thresholds.items()):
            threshold.add_metric([r.rollout_id, r.fleet, gate], t)
    yield from (info, stage, stages, devices, value, threshold)


def families(
    snapshot: FleetSnapshot,
    max_device_series: int = DEFAULT_MAX_DEVICE_SERIES,
    max_version_series: int = DEFAULT_MAX_VERSION_SERIES,
    max_finished_rollouts: int = DEFAULT_MAX_FINISHED_ROLLOUTS,
) -> list[Metric]:
    """Every family of one scrape, computed from a snapshot (no I/O but the snapshot's streams_of, called once
    with the devices that get series)."""
    return [
        *_status_families(snapshot.devices, max_version_series),
        *_fleet_summaries(snapshot.devices),
        *_device_families(snapshot.devices, max_device_series, snapshot.streams_of),
        *_rollout_families(snapshot.rollouts, max_finished_rollouts),
    ]


class _SnapshotCollector(Collector):
    def __init__(self, source: SnapshotSource, caps: tuple[int, int, int]) -> None:
        self._source = source
        self._caps = caps

    def collect(self) -> Iterator[Metric]:
        yield from families(self._source(), *self._caps)

    def describe(self) -> Iterator[Metric]:
        # Families depend on the snapshot; describing none keeps registration from calling the source.
        return iter(())


class FleetMetricsExporter:
    """Serves the control plane's figures on its own registry; `render()` gives the same text for another server."""

    def __init__(
        self,
        source: SnapshotSource,
        max_device_series: int = DEFAULT_MAX_DEVICE_SERIES,
        max_version_series: int = DEFAULT_MAX_VERSION_SERIES,
        max_finished_rollouts: int = DEFAULT_MAX_FINISHED_ROLLOUTS,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(source, (max_device_series, max_version_series,
                                                           max_finished_rollouts)))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def render(self) -> bytes:
        """The Prometheus text exposition of one scrape (for mounting /metrics in the web app)."""
        return bytes(generate_latest(self.registry))

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: any free port); returns the bound port. FleetConfigError when busy."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise FleetConfigError(f"cannot serve fleet metrics on {host}:{port}: {exc}; "
                                   "pick another metrics.port") from exc
        bound = int(self._server.server_address[1])
        log.info("fleet metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None


def _rollout_view(row: RolloutRow, device_states: Mapping[str, int]) -> RolloutView:
    gates: list[GateView] = []
    for g in row.last_gates:
        name = str(g.get("gate", "?"))
        threshold = g.get("threshold")
        for cohort in ("canary", "control"):
            value = g.get(cohort)
            if isinstance(value, int | float) or isinstance(threshold, int | float):
                gates.append(GateView(name, cohort, value if isinstance(value, int | float) else None,
                                      float(threshold) if isinstance(threshold, int | float) else None))
    return RolloutView(row.id, row.fleet, row.group, row.model, row.version, row.state, row.stage_index + 1,
                       len(row.plan.stages), dict(device_states), tuple(gates), row.updated_ms)


class StoreSnapshot:
    """Builds a FleetSnapshot from the fleet database: one query for the devices, one for the latest figures of
    every device heard from within `recent_s`, one per shown rollout for its devices, and, when the exporter asks,
    one for the per-stream figures of the devices it gives per-device series (its cap decides which)."""

    def __init__(self, store: FleetStore, recent_s: float = 60.0,
                 max_finished_rollouts: int = DEFAULT_MAX_FINISHED_ROLLOUTS) -> None:
        self._store = store
        self._rollouts = RolloutRepository(store.engine, store.fleet)
        self._recent_ms = int(recent_s * 1000)
        self._max_finished = max_finished_rollouts

    def _latest_figures(self, now_ms: int) -> dict[str, dict[str, float]]:
        t = telemetry_samples.c
        query = (select(t.device_id, t.figures).where(t.fleet == self._store.fleet,
                                                      t.received_ms >= now_ms - self._recent_ms)
                 .order_by(t.device_id, t.received_ms, t.ts_ms, t.seq))
        with self._store.engine.connect() as conn:
            # The last row per device wins; figures an older version stored unchecked are sanitised.
            return {r.device_id: sanitize.figures(r.figures) for r in conn.execute(query)}

    def __call__(self) -> FleetSnapshot:
        now = self._store.clock()
        active = self._rollouts.active()
        finished = [r for r in self._rollouts.latest(limit=self._max_finished + len(active)) if not r.active]
        rollouts: list[RolloutView] = []
        in_rollout: set[str] = set()
        for row in active + finished[: self._max_finished]:
            devices = self._rollouts.devices(row.id)
            if row.active:
                in_rollout.update(d.device_id for d in devices)
            rollouts.append(_rollout_view(row, Counter(d.state for d in devices)))
        figures = self._latest_figures(now)
        devices_now = [device_view(rec, figures.get(rec.device_id, {}), rec.device_id in in_rollout)
                       for rec in self._store.list_devices()]
        return FleetSnapshot(devices_now, rollouts, self._streams_of)

    def _streams_of(self, device_ids: Sequence[str]) -> dict[str, Mapping[str, Mapping[str, float]]]:
        return {dev: found.streams for dev, found in self._store.streams.all(device_ids).items()}
