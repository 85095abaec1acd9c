"""Capture in its own thread: a bounded queue between the source and the frame loop, with reconnects.

Run to completion: a frame that arrived while its reader was idle-waiting (a paced frame that waited for its slot,
or a live source's read that waited off the CPU), with nothing queued and the frame loop idle, is taken through
the whole pipeline on this thread (attach_inline), saving the thread hand-off; a frame that was already there
when asked for (a backlog, or any frame of an unpaced file) is queued for the frame thread so decoding overlaps
inference. The choice is made per frame and counted (inline_frames, queued_frames).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from edge.errors import SourceError
from edge.pacing import Backoff, Pacer
from edge.sources.base import Frame, FrameSource

log = logging.getLogger(__name__)

# How long stop() waits for the capture thread; a read blocked on an idle pipe may never return.
JOIN_TIMEOUT_S = 2.0
# A read that spent this long off the CPU waited for its frame: the source, not the reader, set the pace.
MIN_BLOCKED_S = 0.0005


def waited_for_frame(wall_s: float, cpu_s: float) -> bool:
    """Whether a read waited for its frame (time off the CPU) rather than found one ready and only decoded it."""
    return wall_s - cpu_s >= MIN_BLOCKED_S


class CaptureSettings(Protocol):
    """The capture fields every source config carries."""

    queue_size: int
    policy: Literal["latest", "all"]
    max_fps: float | None
    reconnect_backoff_s: float
    reconnect_max_s: float


class Capture:
    """Opens the source (SourceError if it cannot) and reads it on a daemon thread until the end or stop()."""

    def __init__(
        self, source: FrameSource, cfg: CaptureSettings, prepare: Callable[[Frame], None] | None = None
    ) -> None:
        self.source = source
        # Preprocessing on this thread overlaps it with the previous frame's inference on the frame thread.
        self._prepare = prepare
        self.policy = cfg.policy
        self._size = cfg.queue_size
        self._backoff = Backoff(cfg.reconnect_backoff_s, cfg.reconnect_max_s)
        self._queue: deque[Frame] = deque()
        # One lock, two conditions: the frame loop waits for a frame, capture (policy 'all') for room, and each
        # put or take wakes only the one thread that can use it.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._room = threading.Condition(lock)
        self._stop = threading.Event()
        self._ended = False
        self._pacer = Pacer(cfg.max_fps, self._stop)
        # Run to completion: who takes idle frames on this thread, and whether the frame loop holds no frame (it
        # is in or between get() calls since its last frame), so a frame run here cannot overtake a queued one.
        self._inline: Callable[[Frame], bool] | None = None
        self._loop_idle = False
        self.inline_frames = 0
        self.queued_frames = 0
        self.drops = 0
        self.frames = 0
        self._errors = 0
        source.open()
        self._thread = threading.Thread(target=self._run, name=f"capture-{source.name}", daemon=True)
        self._thread.start()

    @property
    def source_errors(self) -> int:
        """Read failures, failed reconnects and undecodable items skipped by the source."""
        return self._errors + self.source.skipped

    @property
    def throttled(self) -> int:
        """Live frames discarded for coming sooner than max_fps allows (the pacer's count)."""
        return self._pacer.throttled

    @property
    def finished(self) -> bool:
        """The source ended (or capture stopped) and every queued frame was taken."""
        with self._cond:
            return self._ended and not self._queue

    def queue_depth(self) -> int:
        """Frames waiting for the frame loop."""
        return len(self._queue)

    def attach_inline(self, run: Callable[[Frame], bool] | None) -> None:
        """Let `run` take idle frames to completion on the capture thread (None: queue every frame again).

        run(frame) returns False when it takes no more frames; the frame is then queued as usual.
        """
        with self._cond:
            self._inline = run

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame; None on timeout or once finished."""
        with self._cond:
            self._loop_idle = True
            if not self._queue and not self._ended:
                self._cond.wait_for(lambda: self._queue or self._ended, timeout)
            if not self._queue:
                return None
            frame = self._queue.popleft()
            self._loop_idle = False
            self._room.notify()  # a producer blocked on a full queue (policy 'all')
            return frame

    def stop(self) -> None:
        """Stop reading and wait briefly for the thread; the thread closes the source itself."""
        self._stop.set()
        self.source.interrupt()
        with self._cond:
            self._cond.notify_all()
            self._room.notify_all()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: capture thread is still blocked in a read; leaving it to exit with the process",
                        self.source.name)
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            perf, cpu = time.perf_counter, time.thread_time
            # Only a live source's read can show the reader waited for a frame; a file's reads are never timed.
            live = self.source.live
            while not self._stop.is_set():
                try:
                    if live:
                        w0, c0 = perf(), cpu()
                        frame = self.source.read()
                        blocked = waited_for_frame(perf() - w0, cpu() - c0)
                    else:
                        frame, blocked = self.source.read(), False
                except SourceError as exc:
                    self._reconnect(str(exc))
                    continue
                except Exception:  # a source bug must not end capture: logged with its traceback, then retried
                    log.exception("%s: unexpected error while reading; reconnecting", self.source.name)
                    self._reconnect("unexpected error")
                    continue
                if frame is None:
                    log.info("%s: end of stream after %d frames", self.source.name, self.frames)
                    return
                self._backoff.reset()
                self.frames += 1
                if not self._pacer.admit(frame, live):
                    continue
                # A file is always ready (a read that took long was preempted, not waiting): only a live source's
                # read or a paced frame's slot can show that the reader waited for the frame.
                if (self._pacer.waited or blocked) and self._run_inline(frame):
                    continue
                if self._prepare is not None:
                    self._prepare_frame(frame)
                self._enqueue(frame)
        finally:
            self._close_source()
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _run_inline(self, frame: Frame) -> bool:
        """Run the frame to completion here if nothing is queued and the frame loop holds none; False: queue it."""
        with self._cond:
            run = self._inline
            if run is None or self._queue or not self._loop_idle:
                return False
        try:
            taken = run(frame)
        except Exception:  # a pipeline bug: the frame thread takes the frame instead and meets it there
            log.exception("%s: frame %d could not run to completion; queued instead", self.source.name, frame.index)
            return False
        if taken:
            self.inline_frames += 1
        return taken

    def _prepare_frame(self, frame: Frame) -> None:
        assert self._prepare is not None
        try:
            self._prepare(frame)
        except Exception as exc:  # noqa: BLE001 - the frame thread preprocesses it again and reports the error
            frame.tensor = None
            log.debug("%s: frame %d not preprocessed ahead: %s", self.source.name, frame.index, exc)

    def _enqueue(self, frame: Frame) -> None:
        with self._cond:
            if self.policy == "latest":
                if len(self._queue) >= self._size:
                    self._queue.popleft()
                    self.drops += 1
            else:
                while len(self._queue) >= self._size and not self._stop.is_set():
                    self._room.wait(0.1)
                if self._stop.is_set():
                    return
            self._queue.append(frame)
            self.queued_frames += 1
            self._cond.notify()

    def _reconnect(self, reason: str) -> None:
        """Close and reopen with exponential backoff until it works or stop() is called."""
        self._errors += 1
        while not self._stop.is_set():
            log.warning("%s: %s; reconnecting in %.3g s", self.source.name, reason, self._backoff.delay_s)
            self._close_source()
            if self._backoff.wait(self._stop):
                return
            try:
                self.source.open()
            except SourceError as exc:
                self._errors += 1
                reason = str(exc)
                continue
            log.info("%s: reconnected", self.source.name)
            return

    def _close_source(self) -> None:
        try:
            self.source.close()
        except (SourceError, OSError) as exc:
            log.warning("%s: error while closing: %s", self.source.name, exc)
