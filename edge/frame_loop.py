"""The frame thread's work: wait for a model, open the source with backoff, run the pipeline, report capture figures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.capture import Capture
from edge.capture_prep import AheadOfTimePreprocess
from edge.errors import SourceError
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot
from edge.live_config import LiveConfig
from edge.pacing import Backoff
from edge.pipeline import FrameResult, Pipeline, RunSummary
from edge.shadow_sample import deliver
from edge.sources.base import FrameSource
from edge.supervise import Health

log = logging.getLogger(__name__)

COMPONENT = "frames"


class FrameLoop:
    """Runs under the supervisor as the 'frames' thread; a crash restarts it with a fresh capture."""

    def __init__(
        self,
        live: LiveConfig,
        source: FrameSource,
        slot: ModelSlot,
        stats: FrameStats,
        on_result: Callable[[FrameResult], None],
        stop: threading.Event,
        health: Health,
        *,
        sample: Callable[[int], bool] | None = None,
        on_sample: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self._live = live
        # The shadow check: which frames keep their input tensor, and where those results also go.
        self._sample = sample
        self._on_sample = on_sample
        self._source = source
        self._slot = slot
        self._stats = stats
        self._on_result = on_result
        self._stop = stop
        self._health = health
        self._started_at = time.monotonic()
        self._capture: Capture | None = None
        self._open_errors = 0
        self.summary: RunSummary | None = None

    def run(self) -> None:
        """Once a model is served, open the source (retrying with backoff) and process frames until the end."""
        # Frames captured before any model exists could only be dropped; a file source would lose its start.
        while self._slot.current is None and not self._stop.wait(0.05):
            pass
        capture = self._open()
        if capture is None:
            return
        cfg = self._live.cfg
        pipeline = Pipeline(capture, self._slot, self._deliver, self._stats, top_k=cfg.events.top_k,
                            sample=self._sample)
        duration = cfg.run.duration_s
        left = None if duration is None else max(0.001, duration - (time.monotonic() - self._started_at))
        try:
            self.summary = pipeline.run(self._stop, cfg.run.max_frames, left)
        except BaseException:
            self._capture = None
            capture.stop()
            raise
        log.info("frame loop ended (%s) after %d frames", self.summary.reason, self.summary.frames)

    def _open(self) -> Capture | None:
        source = self._live.cfg.source
        backoff = Backoff(source.reconnect_backoff_s, source.reconnect_max_s)
        while not self._stop.is_set():
            try:
                cfg = self._live.cfg.source
                self._capture = Capture(self._source, cfg, prepare=AheadOfTimePreprocess(self._slot))
                return self._capture
            except SourceError as exc:
                self._open_errors += 1
                log.error("%s; retrying in %.1f s", exc, backoff.delay_s)
                backoff.wait(self._stop)
        return None

    def _deliver(self, result: FrameResult) -> None:
        self._health.ok(COMPONENT)
        deliver(result, self._on_result, self._on_sample)

    def stop(self) -> None:
        """Stop capturing (call after the frame thread ended)."""
        if self._capture is not None:
            self._capture.stop()

    def run_modes(self) -> tuple[int, int]:
        """Frames run to completion on the capture thread, and frames queued for the frame thread, since opening."""
        capture = self._capture
        return (0, 0) if capture is None else (capture.inline_frames, capture.queued_frames)

    def metrics(self) -> dict[str, float]:
        """drops, queue_depth, source_errors (opening failures included) and inline_share for telemetry."""
        capture = self._capture
        if capture is None:
            return {"source_errors": float(self._open_errors + self._source.skipped)}
        out = {
            "drops": float(capture.drops),
            "queue_depth": float(capture.queue_depth()),
            "source_errors": float(capture.source_errors + self._open_errors),
        }
        ran = capture.inline_frames + capture.queued_frames
        if ran:  # how the frames ran: run to completion when idle, queued under backlog (issue 16 §3)
            out["inline_share"] = capture.inline_frames / ran
        return out
