"""The rollout shadow check: a canary also runs the previous version on every Nth frame and reports agreement.

The frame thread only copies one input tensor every Nth frame and offers it to a queue of two; the 'shadow' thread
runs the previous model on it, so a slow shadow drops samples (counted) and never delays a frame. The telemetry
thread closes the window each report: shadow_frames compared and shadow_agreement, in the task's terms (through the
served model's decoder): the share of frames whose top-1 matched for a classifier; for a detector, the F1 of the
served model's boxes against the previous version's (IoU >= 0.5, same class), pooled over the window's frames; for
an anomaly model, the share of windows with the same verdict at each model's own threshold, and the score distance
(edge.sensor.window_shadow).

With a cost budget (a canary that turned the check on by edge.shadow_policy), the first sampled frame is run three
times on the previous version and the median time is its cost on this device: over the budget, the shadow model is
released and no agreement is reported for that version.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np

from edge.hot_swap import ServingModel
from edge.model_sync import ModelSync
from edge.pipeline import FrameResult
from edge.sensor.window_shadow import Thresholds, WindowShadow
from edge.supervise import Health
from edge.task_decode import Decoded, RawOutput
from shared.errors import EdgeferryError

log = logging.getLogger(__name__)

COMPONENT = "shadow"
QUEUE_SIZE = 2
GET_TIMEOUT_S = 0.1
PROBE_RUNS = 3

Loader = Callable[[int], ServingModel | None]


def previous_version_loader(sync: ModelSync) -> Loader:
    """Load the version the served one replaced (current.json's previous), unactivated; None when there is none."""

    def load(served: int) -> ServingModel | None:
        ptr = sync.cache.read_pointer()
        if ptr is None or ptr.version != served or ptr.previous is None or ptr.previous >= served:
            return None
        installed = sync.rollback()
        if installed.version != ptr.previous:
            return None
        return sync.prepare_serving(installed, activate=False)

    return load


class ShadowCheck:
    """update() after each model switch; wants()/submit() from the frame thread; run() is the 'shadow' thread."""

    def __init__(self, every: Callable[[], int | None], load: Loader, health: Health,
                 queue_size: int = QUEUE_SIZE, budget_ms: Callable[[], float | None] = lambda: None,
                 windows: WindowShadow | None = None) -> None:
        # Read per frame so a live change of sync.shadow_every applies on the next frame.
        self._every = every
        self._budget_ms = budget_ms
        # The previous version's measured run time per frame here (None: not probed since it was loaded).
        self.cost_ms: float | None = None
        self._load = load
        self._health = health
        # Judges the sensor windows of anomaly models (their thresholds are the device's, not the heads').
        self._windows = windows
        self._queue: queue.Queue[FrameResult] = queue.Queue(maxsize=queue_size)
        # Held while the shadow model runs one sample, and to swap or close it.
        self._lock = threading.Lock()
        self._model: ServingModel | None = None
        self._served: int | None = None
        self._counts = threading.Lock()
        self._compared = 0
        # Agreeing over compared units (frames for top-1, boxes for detection), summed over the window.
        self._agreed = 0.0
        self._units = 0.0
        self.drops = 0

    @property
    def shadow_version(self) -> int | None:
        """The version run as the shadow now (None: no shadow check)."""
        model = self._model
        return None if model is None else model.version

    @property
    def compared(self) -> int:
        """Samples compared in the open window."""
        with self._counts:
            return self._compared

    def update(self, served: int) -> None:
        """A new version is served: load the one it replaced as the shadow, or run none; a failure only logs."""
        new: ServingModel | None = None
        if self._every() is not None:
            try:
                new = self._load(served)
            except EdgeferryError as exc:
                log.warning("shadow check off for v%d: the previous version cannot be loaded: %s", served, exc)
        with self._lock:
            old, self._model, self._served = self._model, new, served
            self.cost_ms = None
            if old is not None:
                old.model.close()
        if new is not None:
            log.info("shadow check: v%d also runs on every %d frames for agreement with v%d",
                     new.version, self._every() or 0, served)

    def wants(self, index: int) -> bool:
        """Whether this frame's input tensor should be kept for the shadow (frame thread, cheap)."""
        every = self._every()
        return every is not None and self._model is not None and index % every == 0

    def submit(self, result: FrameResult) -> None:
        """Offer a sampled result without blocking; a full queue drops it (counted)."""
        try:
            self._queue.put_nowait(result)
        except queue.Full:
            with self._counts:
                self.drops += 1

    def run_until(self, stop: threading.Event) -> Callable[[], None]:
        """The 'shadow' thread body: compare samples until stop is set."""

        def body() -> None:
            while not stop.is_set():
                try:
                    result = self._queue.get(timeout=GET_TIMEOUT_S)
                except queue.Empty:
                    continue
                self.compare(result)
                self._health.ok(COMPONENT)

        return body

    def compare(self, result: FrameResult) -> None:
        """Run one sample on the shadow model and count how far its result agrees with the served model's."""
        tensor = result.tensor
        if tensor is None:
            return
        with self._lock:
            shadow = self._model
            # A result from a model older than the one the shadow was loaded for compares nothing useful, nor does
            # a previous version of another task.
            if shadow is None or result.version != self._served or shadow.decoder.task != result.task:
                return
            thresholds: Thresholds | None = None
            if result.anomaly is not None and self._windows is not None:
                thresholds = self._windows.thresholds(shadow, result.version)
                if thresholds is None:
                    return
            decoder = shadow.decoder
            if self.cost_ms is None:
                output = self._probe(shadow, tensor)
                if output is None:
                    return
            else:
                output = shadow.infer(tensor)
            reference = decoder.decode(output, result.frame_hw, 1)
        if self._windows and thresholds and reference.anomaly is not None and result.anomaly is not None:
            agreed, units = self._windows.compare(reference.anomaly, result.anomaly, thresholds)
        else:
            agreed, units = decoder.agreement(reference, Decoded(result.prediction, result.detections, result.anomaly))
        with self._counts:
            self._compared += 1
            self._agreed += agreed
            self._units += units

    def _probe(self, shadow: ServingModel, tensor: np.ndarray) -> RawOutput | None:
        """Time the shadow model on one sample (lock held); over the budget, release it and return None."""
        times: list[float] = []
        output: RawOutput | None = None
        for _ in range(PROBE_RUNS):
            started = time.perf_counter()
            output = shadow.infer(tensor)
            times.append((time.perf_counter() - started) * 1000)
        self.cost_ms = statistics.median(times)
        budget = self._budget_ms()
        if budget is not None and self.cost_ms > budget:
            log.info("shadow check off for v%d: v%d takes %.2f ms per frame here, over the %.2f ms budget "
                     "(sync.shadow_canary_budget_ms)", self._served or 0, shadow.version, self.cost_ms, budget)
            shadow.model.close()
            self._model = None
            return None
        return output

    def close(self) -> None:
        """Release the shadow model (after the shadow thread ended)."""
        with self._lock:
            if self._model is not None:
                self._model.model.close()
                self._model = None

    def metrics(self) -> dict[str, float]:
        """Close the window: shadow_frames compared and, when any were, shadow_agreement; nothing when no shadow."""
        with self._counts:
            compared, agreed, units = self._compared, self._agreed, self._units
            self._compared, self._agreed, self._units = 0, 0.0, 0.0
        windows = self._windows.metrics() if self._windows is not None else {}
        if (self._model is None or self._every() is None) and not compared:
            return {}
        out = {"shadow_frames": float(compared)}
        if compared:
            # Frames where neither detector saw anything agree fully and weigh nothing.
            out["shadow_agreement"] = agreed / units if units else 1.0
            out.update(windows)
        return out
