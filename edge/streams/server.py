"""The frame thread of a multi-stream agent: every stream's capture, one scheduler and one batch per served model.

Same face as edge.frame_loop.FrameLoop (run, stop, metrics, summary), so the agent supervises either; results are
FrameResults carrying their stream's name, handed to the same result publisher.

Streams come and go while it runs (SIGHUP, set-config): change_streams() from any thread queues the new set, and
the frame thread takes it between two batches, so no frame of a stream that stays is dropped or held; a removed
stream's capture stops, its waiting frames go, and on_removed(name) is called once none of its frames can follow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge.capture_prep import AheadOfTimePreprocess
from edge.config import AgentConfig, StreamConfig
from edge.errors import AgentError
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, ServingModel
from edge.pipeline import ERROR_LOG_INTERVAL_S, GET_TIMEOUT_S, EndReason, FrameResult, RunSummary
from edge.shadow_sample import deliver, keep_input
from edge.sources.base import FrameSource
from edge.streams.batch_infer import BatchRunner
from edge.streams.batch_size import candidate_sizes, choose_batch_size, measure
from edge.streams.capture import StreamCapture
from edge.streams.figures import StreamFigures
from edge.streams.ring import FrameRing
from edge.streams.scheduler import BatchScheduler, Taken
from edge.supervise import Health

log = logging.getLogger(__name__)

COMPONENT = "frames"


@dataclass(frozen=True)
class Bounds:
    """When a bounded run ends (tests and benchmarks): results in all, or seconds since start."""

    max_frames: int | None = None
    duration_s: float | None = None


class MultiStreamLoop:
    """Runs under the supervisor as the 'frames' thread; stop() after the thread ended stops every capture."""

    def __init__(
        self,
        streams: Sequence[StreamConfig],
        sources: Mapping[str, FrameSource],
        slot: ModelSlot,
        stats: FrameStats,
        on_result: Callable[[FrameResult], None],
        stop: threading.Event,
        health: Health,
        *,
        max_batch: int = 4,
        wait_s: float = 0.002,
        budget_ms: float | None = None,
        top_k: int = 3,
        bounds: Bounds = Bounds(),
        on_removed: Callable[[str], None] | None = None,
        sample: Callable[[int], bool] | None = None,
        on_sample: Callable[[FrameResult], None] | None = None,
        component: str = COMPONENT,
    ) -> None:
        self._slot = slot
        # Its health component: 'frames', or 'frames-<model>' for a model of `models:` with its own loop.
        self._component = component
        # The shadow check, as on one stream: which frames (by their stream's index) keep their input, and where
        # those results also go.
        self._sample = sample
        self._on_sample = on_sample
        self._stats = stats
        self._on_result = on_result
        self._stop = stop
        self._health = health
        self._top_k = top_k
        self._bounds = bounds
        # Batch size: max_batch, or (with a budget) the largest measured size within it, per served model.
        self._max_batch = max_batch
        self._budget_ms = budget_ms
        self._sized_generation = 0
        self._started_at = time.monotonic()
        lock = threading.Lock()
        self.doorbell = threading.Condition(lock)
        # Same lock: 'fifo' captures wait for room here, so a new frame wakes the frame thread alone.
        self.room = threading.Condition(lock)
        # Replaced whole (never changed in place) by the frame thread: other threads iterate the dict they read.
        self.captures: dict[str, StreamCapture] = {cfg.name: self._capture(cfg, sources[cfg.name]) for cfg in streams}
        self._on_removed = on_removed
        self._pending: tuple[list[StreamConfig], dict[str, FrameSource]] | None = None
        self._pending_lock = threading.Lock()
        self.scheduler = BatchScheduler(list(self.captures.values()), self.doorbell, max_batch, wait_s,
                                        room=self.room)
        self.runner = BatchRunner()
        self.summary: RunSummary | None = None
        self._started = False
        self._last_error_log = -ERROR_LOG_INTERVAL_S

    def run(self) -> None:
        """Once a model is served, start every stream and infer their frames until stop, the end or a bound."""
        while self._slot.current is None and not self._stop.wait(0.05):
            self._take_change()
        if self._stop.is_set():
            return
        self._take_change()
        if not self._started:
            self._started = True
            for capture in self.captures.values():
                capture.start()
        self.summary = self._loop()
        log.info("multi-stream loop ended (%s) after %d frames", self.summary.reason, self.summary.frames)

    def stop(self) -> None:
        """Stop every stream's capture (call after the frame thread ended)."""
        for capture in self.captures.values():
            capture.stop()

    def change_streams(self, streams: Sequence[StreamConfig], sources: Mapping[str, FrameSource]) -> None:
        """Serve these streams from now on (any thread): new names start, missing ones stop, a stream whose
        settings changed restarts; `sources` holds a not-yet-opened source for each new or changed stream."""
        names = [s.name for s in streams]
        if not names:
            raise AgentError("a multi-stream agent keeps at least one stream; restart it to serve `source:` alone")
        missing = [s.name for s in streams if s.name not in sources and self._changed(s)]
        if missing:
            raise AgentError(f"no source for the new streams {', '.join(missing)}")
        with self._pending_lock:
            self._pending = (list(streams), dict(sources))

    def changes(self, streams: Sequence[StreamConfig]) -> list[str]:
        """Names of the streams that would start or restart under these settings (they need a new source)."""
        return [s.name for s in streams if self._changed(s)]

    def _changed(self, cfg: StreamConfig) -> bool:
        capture = self.captures.get(cfg.name)
        return capture is None or not _same_capture(capture.cfg, cfg)

    def _take_change(self) -> None:
        """Apply a queued change of streams (frame thread, between batches)."""
        if self._pending is None:
            return
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        streams, sources = pending
        old, new = self.captures, {}
        for cfg in streams:
            keep = old.get(cfg.name)
            same = keep is not None and _same_capture(keep.cfg, cfg)
            new[cfg.name] = keep if keep is not None and same else self._capture(cfg, sources[cfg.name])
        gone = [c for name, c in old.items() if new.get(name) is not c]
        with self.doorbell:
            self.captures = new
            self.scheduler.set_lanes(list(new.values()))
            for capture in gone:
                capture.ring.clear()
        for capture in gone:
            capture.halt()
            log.info("stream %s removed", capture.name)
            if self._on_removed is not None:
                self._on_removed(capture.name)
        if self._started:
            for name, capture in new.items():
                if old.get(name) is not capture:
                    capture.start()
                    log.info("stream %s added", name)

    def _capture(self, cfg: StreamConfig, source: FrameSource) -> StreamCapture:
        ring = FrameRing(cfg.ring_size, cfg.policy, None if cfg.stale_ms is None else cfg.stale_ms / 1000.0)
        return StreamCapture(cfg, source, ring, self.doorbell, StreamFigures(),
                             prepare=AheadOfTimePreprocess(self._slot), room=self.room)

    def metrics(self) -> dict[str, float]:
        """drops, queue_depth and source_errors summed over the streams, like the single source reports them."""
        with self.doorbell:
            skipped = sum(c.ring.skipped + c.ring.stale for c in self.captures.values())
            depth = sum(len(c.ring) for c in self.captures.values())
        return {
            "drops": float(skipped),
            "queue_depth": float(depth),
            "source_errors": float(sum(c.figures.source_errors + c.source.skipped for c in self.captures.values())),
        }

    def stream_figures(self) -> dict[str, dict[str, float]]:
        """Each stream's figures under its name (shared.streams.STREAM_METRICS)."""
        out = {}
        current = self._slot.current
        version = float(current.version) if current is not None else 0.0
        for name, capture in self.captures.items():
            with self.doorbell:
                skipped, stale = capture.ring.skipped, capture.ring.stale
            figures = capture.figures.values(skipped, stale)
            figures["source_errors"] += capture.source.skipped
            figures["model_version"] = version
            out[name] = figures
        return out

    def _loop(self) -> RunSummary:
        perf = time.perf_counter
        scheduler, bounds = self.scheduler, self._bounds
        deadline = None if bounds.duration_s is None else self._started_at + bounds.duration_s
        frames = waiting = errors = 0
        reason: EndReason = "stopped"
        while not self._stop.is_set():
            self._take_change()
            if bounds.max_frames is not None and frames >= bounds.max_frames:
                reason = "max_frames"
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = "duration"
                break
            t0 = perf()
            for capture in self.captures.values():
                capture.check_stall(t0)
            taken = scheduler.gather(GET_TIMEOUT_S)
            if not taken:
                if scheduler.finished:
                    reason = "end_of_stream"
                    break
                continue
            serving = self._slot.acquire(taken[0].frame.index)
            if serving is None:
                waiting += len(taken)
                for _ in taken:
                    self._stats.record_waiting()
                continue
            try:
                if serving.generation != self._sized_generation:
                    self._size_batches(serving)
                size = self.scheduler.max_size
                # Gathered before this model's batch size was known: run in batches it allows.
                for start in range(0, len(taken), size):
                    done, failed = self._infer(serving, taken[start : start + size], perf() - t0)
                    frames += done
                    errors += failed
            finally:
                self._slot.release(serving)
            self._health.ok(self._component)
        return RunSummary(frames=frames, waiting=waiting, errors=errors, reason=reason)

    def _size_batches(self, serving: ServingModel) -> None:
        """Batch up to max_batch, or to the largest size whose measured latency fits batching.budget_ms."""
        self._sized_generation = serving.generation
        size = self._max_batch
        if self._budget_ms is not None and size > 1 and self.runner.can_batch(serving):
            try:
                latency = measure(serving, candidate_sizes(size), each=self.runner.in_flight(serving))
            except Exception as exc:  # noqa: BLE001 - a model that cannot be timed in batches runs frame by frame
                log.warning("model version %d: batch sizes not measured (%s: %s); frames run one by one",
                            serving.version, type(exc).__name__, exc)
                latency = {}
            size = choose_batch_size(latency, self._budget_ms)
            shown = ", ".join(f"{n}: {ms:.2f} ms" for n, ms in latency.items())
            log.info("model version %d: batch size %d within %.3g ms (measured %s)", serving.version, size,
                     self._budget_ms, shown or "nothing")
        self.scheduler.max_size = size

    def _infer(self, serving: ServingModel, taken: list[Taken], waited: float) -> tuple[int, int]:
        """Preprocess what capture did not, run the batch, decode and hand on each frame; (done, failed)."""
        perf = time.perf_counter
        ready: list[Taken] = []
        tensors: list[np.ndarray] = []
        preps: list[float] = []
        failed = 0
        for item in taken:
            frame = item.frame
            try:
                if frame.tensor is not None and frame.prepared_for == serving.generation:
                    tensors.append(frame.tensor)
                    preps.append(frame.prep_s)
                else:
                    start = perf()
                    # The served preprocessor reuses its output buffer: each frame of a batch needs its own copy.
                    tensors.append(serving.preprocessor(frame.image).copy())
                    preps.append(perf() - start)
                ready.append(item)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not fail its batch: counted, logged
                failed += 1
                self._failed(item, serving, exc)
        if not ready:
            return 0, failed
        t2 = perf()
        try:
            outputs = self.runner.run(serving, tensors)
        except Exception as exc:  # noqa: BLE001 - a failed run fails its frames, not the streams
            for item in ready:
                self._failed(item, serving, exc)
            return 0, failed + len(ready)
        t3 = perf()
        backlog = self.scheduler.waiting()
        decoder, top_k, sample = serving.decoder, self._top_k, self._sample
        done = 0
        last = len(ready) - 1
        for i, (item, output, prep, tensor) in enumerate(zip(ready, outputs, preps, tensors, strict=True)):
            frame = item.frame
            try:
                t4 = perf()
                decoded = decoder.decode(output, frame.image.shape[:2], top_k)
                t5 = perf()
                deliver(FrameResult(
                    frame.index, frame.captured_at, frame.source, serving.version, decoded.prediction,
                    backlog or i < last, keep_input(sample, frame.index, tensor), decoded.detections,
                    frame.image if decoder.keeps_image else None, decoder.task, decoded.anomaly, item.lane.name,
                    serving.manifest.name,
                ), self._on_result, self._on_sample)
                t6 = perf()
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the streams
                failed += 1
                self._failed(item, serving, exc)
                continue
            self._stats.record(waited, prep, t3 - t2, t5 - t4, t6 - t5, t6 - frame.captured_at, t6)
            capture = self.captures.get(item.lane.name)
            if capture is not None:
                capture.figures.processed(frame.captured_at, item.taken_at, t6)
            done += 1
        return done, failed

    def _failed(self, item: Taken, serving: ServingModel, exc: Exception) -> None:
        self._stats.record_error()
        now = time.monotonic()
        if now - self._last_error_log < ERROR_LOG_INTERVAL_S:
            return
        self._last_error_log = now
        log.warning("stream %s: frame %d failed on model version %d: %s: %s", item.lane.name, item.frame.index,
                    serving.version, type(exc).__name__, exc, exc_info=not isinstance(exc, AgentError))


def _same_capture(a: StreamConfig, b: StreamConfig) -> bool:
    """Whether two settings of a stream capture alike (its zones and detection settings are the tracker's)."""
    tracking = {"zones", "detection"}
    return a.model_dump(exclude=tracking) == b.model_dump(exclude=tracking)


def multi_stream_loop(
    cfg: AgentConfig,
    sources: Mapping[str, FrameSource],
    slot: ModelSlot,
    stats: FrameStats,
    on_result: Callable[[FrameResult], None],
    stop: threading.Event,
    health: Health,
    on_removed: Callable[[str], None] | None = None,
    sample: Callable[[int], bool] | None = None,
    on_sample: Callable[[FrameResult], None] | None = None,
    streams: Sequence[StreamConfig] | None = None,
    component: str = COMPONENT,
) -> MultiStreamLoop:
    """The loop for a config's `streams:` (or those of one model), with its batching, top_k, run bounds and shadow
    check."""
    return MultiStreamLoop(
        cfg.streams if streams is None else streams, sources, slot, stats, on_result, stop, health,
        max_batch=cfg.batching.max_size, wait_s=cfg.batching.wait_ms / 1000.0, budget_ms=cfg.batching.budget_ms,
        top_k=cfg.events.top_k, bounds=Bounds(cfg.run.max_frames, cfg.run.duration_s), on_removed=on_removed,
        sample=sample, on_sample=on_sample, component=component,
    )
