"""Results from the frame loop become events on their own thread, so JSON and the durable outbox write overlap
the next frame's inference; a full queue blocks the frame loop rather than lose a result."""

from __future__ import annotations

import logging
import queue
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
        self._queue: queue.Queue[FrameResult | None] = queue.Queue(maxsize=queue_size)
        self.last: FrameResult | None = None
        # Counted here, off the frame thread; the telemetry thread closes the window each report.
        self.quality = QualityWindow()

    def submit(self, result: FrameResult) -> None:
        """Queue one result in frame order."""
        self._queue.put(result)

    def finish(self) -> None:
        """End run() after everything queued so far is published."""
        self._queue.put(None)

    def run(self) -> None:
        """Publish results until finish(); a failure is the supervisor's to count, and the next result goes on."""
        while (result := self._queue.get()) is not None:
            self.last = result
            events = self.events
            p = result.prediction
            self.quality.add(p.label, p.score)
            try:
                if events.policy.cfg.mode != "off":
                    events.on_result(
                        Detection(
                            label=p.label,
                            score=p.score,
                            top_k=list(p.top_k),
                            frame=result.index,
                            model_version=result.version,
                        )
                    )
            except EdgeferryError as exc:
                log.warning("result of frame %d not published: %s", result.index, exc)
            if self._observer is not None:
                self._observer(result)
            self._health.ok(COMPONENT)
