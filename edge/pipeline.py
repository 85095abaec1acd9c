"""The frame loop: capture -> preprocess -> infer -> decode -> publish, timed per stage, model read per frame.

Decoding goes through the served model's task decoder (edge.task_decode), so a result carries a classification or
a detector's objects and the loop itself never asks which.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from edge.errors import AgentError
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot
from edge.shadow_sample import keep_input
from edge.sources.base import Frame
from shared.streams import DEFAULT_STREAM
from shared.tasks import Detections, Prediction
from shared.tasks.anomaly import AnomalyScore

log = logging.getLogger(__name__)

EndReason = Literal["stopped", "end_of_stream", "max_frames", "duration"]
# How long one get() may block, so stop and deadlines are noticed promptly.
GET_TIMEOUT_S = 0.1
# Frame errors are logged at most this often (each one is counted).
ERROR_LOG_INTERVAL_S = 10.0
# Results after a swap whose inter-result gaps count towards swap_pause_ms.
SWAP_WATCH_FRAMES = 2


class FrameFeed(Protocol):
    """What the loop needs from Capture."""

    @property
    def finished(self) -> bool:
        """The source ended and nothing is queued."""
        ...

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame or None."""
        ...

    def queue_depth(self) -> int:
        """Frames captured and waiting for the loop."""
        ...


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One inferred frame, handed to on_result."""

    index: int
    captured_at: float
    source: str
    version: int
    # A classifier's result (None for other tasks).
    prediction: Prediction | None
    # Frames were already waiting when this one was done: its publishing should overlap the next inference.
    backlog: bool = False
    # A copy of the model input, only on frames the shadow check sampled (None on every other frame).
    tensor: np.ndarray | None = None
    # A detector's objects in frame pixels (None for other tasks).
    detections: Detections | None = None
    # The frame itself, kept by tasks that need it after inference (object snapshots); never copied.
    image: np.ndarray | None = None
    # The served model's task: which result sink publishes it.
    task: str = "classification"
    # An anomaly model's score of this sensor window (None for other tasks).
    anomaly: AnomalyScore | None = None
    # The stream the frame came from (shared.streams): 'default' for the single `source:`.
    stream: str = DEFAULT_STREAM
    # The served model's name: results of several models (`models:`) each go to their own task's sink.
    model: str = ""

    @property
    def frame_hw(self) -> tuple[int, int] | None:
        """(height, width) of the frame, when the result kept it."""
        return None if self.image is None else (int(self.image.shape[0]), int(self.image.shape[1]))

    def summary(self) -> str:
        """What a person reads in a status line."""
        if self.prediction is not None:
            return f"{self.prediction.label} ({self.prediction.score:.2f})"
        if self.anomaly is not None:
            a = self.anomaly
            return f"{'anomaly' if a.anomalous else 'normal'} (score {a.score:.3g}, threshold {a.threshold:.3g})"
        found = self.detections or ()
        return f"{len(found)} object{'' if len(found) == 1 else 's'}" + (
            f" ({', '.join(sorted({d.label for d in found}))})" if found else "")


@dataclass(frozen=True)
class RunSummary:
    """How a run went and why it ended."""

    frames: int
    waiting: int
    errors: int
    reason: EndReason


class Pipeline:
    """Runs on the calling thread; on_result must not block (it should only enqueue).

    Run to completion: a capture that offers it (attach_inline) hands a frame that arrived while everything was
    idle straight to run_inline on its own thread, which takes it through preprocess, infer, decode and on_result
    with no hand-off; frames that find the loop busy are queued and taken here (the threaded pipeline). A lock
    keeps one frame in flight at a time, so results stay in frame order whichever thread produced them.
    """

    def __init__(
        self,
        capture: FrameFeed,
        slot: ModelSlot,
        on_result: Callable[[FrameResult], None],
        stats: FrameStats,
        *,
        top_k: int = 3,
        sample: Callable[[int], bool] | None = None,
    ) -> None:
        self.capture = capture
        # Which frames keep a copy of their input tensor in their result (the shadow check's samples).
        self.sample = sample
        self.slot = slot
        self.on_result = on_result
        self.stats = stats
        self.top_k = top_k
        self._last_error_log = -ERROR_LOG_INTERVAL_S
        self._unlogged_errors = 0
        # One frame in flight at a time, on the frame thread or (run to completion) the capture thread.
        self._lock = threading.Lock()
        self._open = False
        self._stop = threading.Event()
        self._max_frames: int | None = None
        self._deadline: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._frames = self._waiting = self._errors = 0
        self._last_end: float | None = None
        self._last_generation = 0
        self._watch = 0
        self._pause = 0.0

    def run(self, stop: threading.Event, max_frames: int | None = None, duration_s: float | None = None) -> RunSummary:
        """Process frames until stop is set, the source ends, max_frames results, or duration_s elapses."""
        perf = time.perf_counter
        capture = self.capture
        attach: Callable[[Callable[[Frame], bool] | None], None] | None = getattr(capture, "attach_inline", None)
        with self._lock:
            self._reset()
            self._stop, self._max_frames = stop, max_frames
            self._deadline = perf() + duration_s if duration_s is not None else None
            self._open = True
        if attach is not None:
            attach(self.run_inline)
        waited = 0.0
        reason: EndReason = "stopped"
        try:
            while True:
                done = self._ended()
                if done is not None:
                    reason = done
                    break
                t0 = perf()
                frame = capture.get(GET_TIMEOUT_S)
                t1 = perf()
                waited += t1 - t0
                if frame is None:
                    if capture.finished:
                        reason = "end_of_stream"
                        break
                    continue
                with self._lock:
                    # Frames run to completion while this thread waited count towards max_frames too.
                    if self._max_frames is not None and self._frames >= self._max_frames:
                        reason = "max_frames"
                        break
                    self._process(frame, waited, t1)
                waited = 0.0
        finally:
            if attach is not None:
                attach(None)
            with self._lock:
                self._open = False
                if self._watch:
                    self.stats.record_swap(self._pause)
                    self._watch = 0
        return RunSummary(frames=self._frames, waiting=self._waiting, errors=self._errors, reason=reason)

    def run_inline(self, frame: Frame) -> bool:
        """Take a frame from capture to result on the calling (capture) thread; False if this run takes no more
        frames (stopped, bounded or ended), so the caller queues it instead."""
        with self._lock:
            if not self._open or self._ended() is not None:
                return False
            t1 = time.perf_counter()
            # The loop was idle from its last result (or the frame's capture) until this frame arrived.
            idle = 0.0 if self._last_end is None else max(0.0, frame.captured_at - self._last_end)
            self._process(frame, idle, t1)
            return True

    def _ended(self) -> EndReason | None:
        if self._stop.is_set():
            return "stopped"
        if self._max_frames is not None and self._frames >= self._max_frames:
            return "max_frames"
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return "duration"
        return None

    def _process(self, frame: Frame, waited: float, t1: float) -> None:
        """One frame through preprocess, infer, decode and on_result, timed per stage (holding self._lock)."""
        perf = time.perf_counter
        slot, stats = self.slot, self.stats
        serving = slot.acquire(frame.index)
        if serving is None:
            self._waiting += 1
            stats.record_waiting()
            return
        try:
            if frame.tensor is not None and frame.prepared_for == serving.generation:
                batch, t2 = frame.tensor, perf()
                prep = frame.prep_s
            else:
                batch = serving.preprocessor(frame.image)
                t2 = perf()
                prep = t2 - t1
            logits = serving.infer(batch)
            t3 = perf()
            decoder = serving.decoder
            decoded = decoder.decode(logits, frame.image.shape[:2], self.top_k)
            t4 = perf()
            backlog = self.capture.queue_depth() > 0
            self.on_result(FrameResult(frame.index, frame.captured_at, frame.source, serving.version,
                                       decoded.prediction, backlog, keep_input(self.sample, frame.index, batch),
                                       decoded.detections,
                                       frame.image if decoder.keeps_image else None, decoder.task,
                                       decoded.anomaly, model=serving.manifest.name))
            t5 = perf()
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream: counted, logged below
            self._errors += 1
            stats.record_error()
            self._log_error(frame.index, serving.version, exc)
            return
        finally:
            slot.release(serving)
        stats.record(waited, prep, t3 - t2, t4 - t3, t5 - t4, t5 - frame.captured_at, t5)
        self._frames += 1
        if serving.generation != self._last_generation:
            if self._last_generation:
                self._watch, self._pause = SWAP_WATCH_FRAMES, 0.0
            self._last_generation = serving.generation
        if self._watch and self._last_end is not None:
            self._pause = max(self._pause, t5 - self._last_end)
            self._watch -= 1
            if not self._watch:
                self.stats.record_swap(self._pause)
        self._last_end = t5

    def _log_error(self, index: int, version: int, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log < ERROR_LOG_INTERVAL_S:
            self._unlogged_errors += 1
            return
        more = f" ({self._unlogged_errors} more since the last report)" if self._unlogged_errors else ""
        # Agent errors explain themselves; anything else is a bug whose traceback is worth the lines.
        log.warning(
            "frame %d failed on model version %d: %s: %s%s", index, version, type(exc).__name__, exc, more,
            exc_info=not isinstance(exc, AgentError),
        )
        self._last_error_log = now
        self._unlogged_errors = 0
