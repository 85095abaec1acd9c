"""/metrics for Prometheus, generated from the same metric table as MQTT telemetry (shared.metrics.METRICS)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.errors import AgentError
from shared.metrics import METRICS

log = logging.getLogger(__name__)


class _SnapshotCollector(Collector):
    """Yields the latest telemetry values; figures not reported yet are absent rather than 0."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(labels)
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, values: Mapping[str, float]) -> None:
        with self._lock:
            self._values.update(values)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = dict(self._values)
        names, label_values = list(self._labels), list(self._labels.values())
        for m in METRICS:
            doc = f"{m.description} ({m.unit})" if m.unit else m.description
            family: CounterMetricFamily | GaugeMetricFamily
            if m.kind == "counter":
                family = CounterMetricFamily(m.prometheus_name, doc, labels=names)
            else:
                family = GaugeMetricFamily(m.prometheus_name, doc, labels=names)
            if m.name in values:
                family.add_metric(label_values, values[m.name])
            yield family


class PrometheusExporter:
    """Serves the agent's figures on its own registry (never the process-global one)."""

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = _SnapshotCollector(labels or {})
        self.registry.register(self._collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def update(self, values: Mapping[str, float]) -> None:
        """Latest figures (names from shared.metrics; undeclared names are ignored by collect)."""
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
