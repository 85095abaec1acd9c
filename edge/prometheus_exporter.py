"""/metrics for Prometheus, generated from the same metric table as MQTT telemetry (shared.metrics).

Flat figures are converted to base units (ms -> seconds, MiB -> bytes, % -> ratio) as the table declares; stage
latency is also exported as a histogram so `histogram_quantile` can aggregate it across devices.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from edge.errors import AgentError
from edge.frame_stats import HistogramSnapshot
from shared.metrics import METRICS, STAGE_LATENCY, UNITS
from shared.metrics import Metric as Figure
from shared.streams import STREAM_METRICS

log = logging.getLogger(__name__)

HistogramSource = Callable[[], Mapping[str, HistogramSnapshot]]
# A multi-stream agent's figures: stream name -> figures of shared.streams, read at scrape time.
StreamSource = Callable[[], Mapping[str, Mapping[str, float]]]
STREAM_LABEL = "stream"


def stream_family_name(m: Figure) -> str:
    """edgeferry_stream_<...>: a stream figure's family, apart from the device-wide one of the same name."""
    return m.prometheus_name.replace("edgeferry_", "edgeferry_stream_", 1)


def _help(description: str, unit: str | None) -> str:
    return f"{description} ({unit})" if unit else description


class _SnapshotCollector(Collector):
    """Yields the latest telemetry values; figures not reported yet are absent rather than 0."""

    def __init__(self, labels: Mapping[str, str], histograms: HistogramSource | None) -> None:
        self._labels = dict(labels)
        self._values: dict[str, float] = {}
        self._histograms = histograms
        self.streams: StreamSource | None = None
        self._lock = threading.Lock()

    def update(self, values: Mapping[str, float]) -> None:
        with self._lock:
            self._values.update(values)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = dict(self._values)
        names, label_values = list(self._labels), list(self._labels.values())
        for m in METRICS:
            doc = _help(m.description, m.unit_info.base or m.unit)
            family: CounterMetricFamily | GaugeMetricFamily
            if m.kind == "counter":
                family = CounterMetricFamily(m.prometheus_name, doc, labels=names)
            else:
                family = GaugeMetricFamily(m.prometheus_name, doc, labels=names)
            if m.name in values:
                family.add_metric(label_values, values[m.name] * m.prometheus_factor)
            yield family
        yield from self._collect_histograms(names, label_values)
        yield from self._collect_streams(names, label_values)

    def _collect_streams(self, names: list[str], label_values: list[str]) -> Iterator[Metric]:
        if self.streams is None:
            return
        try:
            streams = self.streams()
        except Exception:
            log.exception("per-stream figures failed; left out of this scrape")
            return
        labels = [*names, STREAM_LABEL]
        for m in STREAM_METRICS:
            doc = _help(m.description, m.unit_info.base or m.unit)
            family: CounterMetricFamily | GaugeMetricFamily
            if m.kind == "counter":
                family = CounterMetricFamily(stream_family_name(m), doc, labels=labels)
            else:
                family = GaugeMetricFamily(stream_family_name(m), doc, labels=labels)
            for stream, figures in streams.items():
                if m.name in figures:
                    family.add_metric([*label_values, stream], figures[m.name] * m.prometheus_factor)
            yield family

    def _collect_histograms(self, names: list[str], label_values: list[str]) -> Iterator[Metric]:
        h = STAGE_LATENCY
        family = HistogramMetricFamily(h.prometheus_name, _help(h.description, UNITS[h.unit].base),
                                       labels=[*names, h.label])
        for stage, snap in (self._histograms() if self._histograms is not None else {}).items():
            buckets = [(floatToGoString(b), float(n)) for b, n in zip(snap.bounds, snap.cumulative, strict=False)]
            buckets.append(("+Inf", float(snap.count)))
            family.add_metric([*label_values, stage], buckets, snap.sum_s)
        yield family


class PrometheusExporter:
    """Serves the agent's figures on its own registry (never the process-global one).

    `histograms` returns the per-stage latency histograms (pass FrameStats.histograms); without it the
    histogram family is described but has no samples.
    """

    def __init__(self, labels: Mapping[str, str] | None = None, histograms: HistogramSource | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = _SnapshotCollector(labels or {}, histograms)
        self.registry.register(self._collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def set_streams(self, streams: StreamSource) -> None:
        """Also serve each stream's figures (a multi-stream agent), labelled with the stream's name."""
        self._collector.streams = streams

    def update(self, values: Mapping[str, float]) -> None:
        """Latest figures under their MQTT names and units (undeclared names are ignored by collect)."""
        self._collector.update(values)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: any free port); returns the bound port."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise AgentError(f"cannot serve Prometheus metrics on {host}:{port}: {exc}; "
                             "pick another daemon.prometheus_port") from exc
        bound = int(self._server.server_address[1])
        log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
