"""Results from the frame loop become events in the durable outbox, in frame order, without a thread hand-off
when the frame loop has nothing else to do: a result is published on the frame thread when no frame waits behind
it and nothing is queued (the hand-off would only add a wake-up to its latency), and on the 'results' thread while
frames are waiting, so JSON and the outbox commit overlap the next inference. A full queue blocks the frame loop
rather than lose a result."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from edge.events import EventEmitter
from edge.pipeline import FrameResult
from edge.quality import QualityWindow
from edge.supervise import Health
from shared.errors import EdgeferryError
from shared.payloads import Detection

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
    ) -> None:
        # Replaced whole by live config (events.*); the thread reads the attribute once per result.
        self.events = events
        self._health = health
        self._observer = observer
        self._size = queue_size
        self._items: deque[FrameResult | None] = deque()
        # One lock: the results thread waits for items (and for an inline publish to end), submit() for room.
        lock = threading.Lock()
        self._ready = threading.Condition(lock)
        self._room = threading.Condition(lock)
        # Someone (the results thread or submit() inline) is publishing: nobody else may, so order holds.
        self._busy = False
        self.last: FrameResult | None = None
        # Counted here, off the frame thread; the telemetry thread closes the window each report.
        self.quality = QualityWindow()

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
                while items and len(batch) < MAX_BATCH:
                    item = items.popleft()
                    if item is None:
                        end = True
                        break
                    batch.append(item)
                self._busy = bool(batch)
                self._room.notify()
            if batch:
                try:
                    self._publish(batch)
                finally:
                    with self._ready:
                        self._busy = False
            if end:
                return

    def _publish(self, results: list[FrameResult]) -> None:
        self.last = results[-1]
        events = self.events
        quality = self.quality
        detections = []
        for result in results:
            p = result.prediction
            quality.add(p.label, p.score)
            detections.append(
                Detection(label=p.label, score=p.score, top_k=list(p.top_k), frame=result.index,
                          model_version=result.version)
            )
        try:
            if events.policy.cfg.mode != "off":
                if len(detections) == 1:
                    events.on_result(detections[0])
                else:
                    events.on_results(detections)
        except EdgeferryError as exc:
            frames = f"{results[0].index}" if len(results) == 1 else f"{results[0].index}-{results[-1].index}"
            log.warning("results of frame %s not published: %s", frames, exc)
        if self._observer is not None:
            for result in results:
                self._observer(result)
        self._health.ok(COMPONENT)
