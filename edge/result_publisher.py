"""Results from the frame loop become events in the durable outbox, in frame order, without a thread hand-off
when the frame loop has nothing else to do: a result is published on the frame thread when no frame waits behind
it and nothing is queued (the hand-off would only add a wake-up to its latency), and on the 'results' thread while
frames are waiting, so JSON and the outbox commit overlap the next inference. A full queue blocks the frame loop
rather than lose a result.

Each result goes to the sink of its model's task (edge.result_sinks), chosen when results of another version of
that model start; several models (`models:`, one per task) each keep their own sink.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable

from edge.detection.service import DetectionService
from edge.errors import AgentError
from edge.events import EventEmitter
from edge.pipeline import FrameResult
from edge.quality import QualityWindow
from edge.result_sinks import ClassificationSink, DetectionSink, ResultSink
from edge.sensor.service import AnomalyService
from edge.sensor.sink import AnomalySink
from edge.supervise import Health

log = logging.getLogger(__name__)

COMPONENT = "results"
QUEUE_SIZE = 256
# Results published in one outbox transaction at most; bounds the latency of the first one in a backlog.
MAX_BATCH = 64


class ResultPublisher:
    """submit() from the frame thread; run() is the 'results' thread body and ends at finish()."""

    def __init__(
        self,
        events: EventEmitter,
        health: Health,
        observer: Callable[[FrameResult], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        detection: DetectionService | None = None,
        anomaly: AnomalyService | None = None,
        primary: str | None = None,
    ) -> None:
        # sync.model's name: with further models serving (`models:`), results_window counts its results alone,
        # the evidence a rollout of sync.model is judged on. None: every result counts.
        self._primary = primary
        self._classification = ClassificationSink(events)
        self.detection = detection
        self._sinks: dict[str, ResultSink] = {"classification": self._classification}
        if detection is not None:
            self._sinks["detection"] = DetectionSink(detection)
        self.anomaly = anomaly
        if anomaly is not None:
            self._sinks["anomaly"] = AnomalySink(anomaly)
        # Per model name: the sink its results go to, and the (version, task) they came from last.
        self._serving: dict[str, tuple[ResultSink, int, str]] = {}
        self._health = health
        self._observer = observer
        self._size = queue_size
        # Results, calls to make in order with them (call_in_order), and the None that ends run().
        self._items: deque[FrameResult | Callable[[], None] | None] = deque()
        # One lock: the results thread waits for items (and for an inline publish to end), submit() for room.
        lock = threading.Lock()
        self._ready = threading.Condition(lock)
        self._room = threading.Condition(lock)
        # Someone (the results thread or submit() inline) is publishing: nobody else may, so order holds.
        self._busy = False
        self.last: FrameResult | None = None

    @property
    def events(self) -> EventEmitter:
        """The result events emitter (classification); replaced whole by live config (events.*)."""
        return self._classification.events

    @events.setter
    def events(self, emitter: EventEmitter) -> None:
        self._classification.events = emitter

    @property
    def quality(self) -> QualityWindow:
        """Classification quality, counted off the frame thread; the telemetry thread closes the window."""
        return self._classification.quality

    def metrics(self) -> dict[str, float]:
        """Close the quality windows: classification figures, and a detector's where one served in the window.

        results_window counts the results of every task, or sync.model's alone while further models serve (rollout
        gates read it as the evidence behind a window of sync.model).
        """
        out = self._classification.quality.metrics()
        counts = {"classification": out.get("results_window", 0.0)}
        if self.detection is not None:
            figures = self.detection.metrics()
            if figures.get("det_frames_window") or self._serves(DetectionSink):
                out.update(figures)
                counts["detection"] = figures.get("det_frames_window", 0.0)
        if self.anomaly is not None and self.anomaly.threshold is not None:
            out.update(self.anomaly.metrics())
            counts["anomaly"] = float(self.anomaly.figures.last_count)
        task = self._counted_task()
        out["results_window"] = sum(counts.values()) if task is None else counts.get(task, 0.0)
        return out

    def _counted_task(self) -> str | None:
        """Whose results the window's evidence counts: None for every task's (sync.model serves alone), else the
        task of sync.model ('' before its first result)."""
        serving = self._serving
        if self._primary is None or not set(serving) - {self._primary}:
            return None
        primary = serving.get(self._primary)
        return primary[2] if primary is not None else ""

    def class_counts(self) -> dict[str, int]:
        """Label -> top-1 results and detections in the windows metrics() closed last."""
        task = self._counted_task()
        counts: Counter[str] = Counter()
        if task in (None, "classification"):
            counts.update(self._classification.quality.class_counts())
        if self.detection is not None and task in (None, "detection"):
            counts.update(self.detection.class_counts())
        return dict(counts)

    def zone_counts(self) -> dict[str, int] | None:
        """Objects per zone now while a detector serves; None otherwise (no zones to count)."""
        if self.detection is None or not self._serves(DetectionSink):
            return None
        return self.detection.zone_counts()

    def _serves(self, kind: type) -> bool:
        """Whether the latest results of some model went to a sink of this kind."""
        return any(isinstance(sink, kind) for sink, _, _ in self._serving.values())

    def drop_stream(self, model: str, stream: str) -> None:
        """A stream `model` served was removed or moved: once its results so far are out, that model's sink ends
        what it followed there (another model serving the stream now keeps its own)."""

        def drop() -> None:
            known = self._serving.get(model)
            if known is not None:
                known[0].drop_stream(stream)

        self.call_in_order(drop)

    def end_stream(self) -> None:
        """No more results follow (after finish() and the results thread ended): followed objects end."""
        serving, self._serving = self._serving, {}
        for sink, _, _ in serving.values():
            sink.finish()

    def submit(self, result: FrameResult) -> None:
        """Publish one result now if nothing is ahead of it and no frame waits behind it, else queue it."""
        with self._ready:
            inline = not result.backlog and not self._items and not self._busy
            if inline:
                self._busy = True
            else:
                while len(self._items) >= self._size:
                    self._room.wait()
                self._items.append(result)
                if not self._busy:
                    self._ready.notify()
                return
        try:
            self._publish([result])
        except Exception as exc:  # noqa: BLE001 - a publishing bug must not fail the frame: counted as the results
            # component's failure, as the supervisor counts one on the results thread, and the next result goes on
            self._health.failed(COMPONENT, exc)
            log.error("%s failed on frame %d (%s: %s); the next result goes on", COMPONENT, result.index,
                      type(exc).__name__, exc)
        finally:
            with self._ready:
                self._busy = False
                if self._items:
                    self._ready.notify()

    def call_in_order(self, call: Callable[[], None]) -> None:
        """Make a call on the results thread once every result submitted before it is published (a removed
        stream's objects end after its last frame's events, never before)."""
        with self._ready:
            while len(self._items) >= self._size:
                self._room.wait()
            self._items.append(call)
            if not self._busy:
                self._ready.notify()

    def finish(self) -> None:
        """End run() after everything submitted so far is published."""
        with self._ready:
            self._items.append(None)
            self._ready.notify()

    def run(self) -> None:
        """Publish queued results until finish(); a failure is the supervisor's to count, and the next result goes on.

        Everything queued when the thread wakes is published together (one outbox transaction), so a results
        thread that falls behind catches up instead of paying one commit per frame; the observer sees each
        result only once its event is durable.
        """
        items = self._items
        while True:
            with self._ready:
                while not items or self._busy:
                    self._ready.wait()
                batch: list[FrameResult] = []
                end = False
                call: Callable[[], None] | None = None
                while items and len(batch) < MAX_BATCH:
                    item = items.popleft()
                    if item is None:
                        end = True
                        break
                    if not isinstance(item, FrameResult):
                        call = item
                        break
                    batch.append(item)
                self._busy = bool(batch) or call is not None
                self._room.notify()
            if batch or call is not None:
                try:
                    if batch:
                        self._publish(batch)
                    if call is not None:
                        call()
                finally:
                    with self._ready:
                        self._busy = False
            if end:
                return

    def _publish(self, results: list[FrameResult]) -> None:
        self.last = results[-1]
        start = 0
        for end in range(1, len(results) + 1):
            if end == len(results) or (results[end].model, results[end].version, results[end].task) != (
                results[start].model, results[start].version, results[start].task
            ):
                self._sink_for(results[start]).publish(results[start:end])
                start = end
        if self._observer is not None:
            for result in results:
                self._observer(result)
        self._health.ok(COMPONENT)

    def _sink_for(self, result: FrameResult) -> ResultSink:
        """The sink of the result's model; when another version of that model starts, its old sink ends or
        restarts (another model's sink is left alone: one model per task, edge.task_claims)."""
        known = self._serving.get(result.model)
        if known is not None and (known[1], known[2]) == (result.version, result.task):
            return known[0]
        sink = self._sinks.get(result.task)
        if sink is None:
            raise AgentError(f"results of a {result.task} model cannot be published by this agent")
        if known is not None and known[0] is not sink:
            known[0].finish()
        sink.start_model(result.version)
        self._serving = {**self._serving, result.model: (sink, result.version, result.task)}
        return sink
