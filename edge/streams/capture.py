"""A stream's capture thread: open (with backoff), read, pace, preprocess ahead, and put frames in its ring.

A stream that errors, ends its connection or stalls is reconnected with the same doubling backoff as the single
source (edge.pacing); it only ever waits on itself, so the other streams and the scheduler go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.capture import JOIN_TIMEOUT_S
from edge.config import StreamConfig
from edge.errors import SourceError
from edge.pacing import Backoff, Pacer
from edge.sources.base import Frame, FrameSource
from edge.streams.figures import StreamFigures
from edge.streams.ring import FrameRing

log = logging.getLogger(__name__)

# How often a 'fifo' producer waiting for room looks at stop().
ROOM_POLL_S = 0.1


class StreamCapture:
    """One stream's reader thread; the ring and the doorbell (their shared lock) belong to the scheduler.

    A 'fifo' capture waiting for room waits on `room` (a condition on the doorbell's lock, notified when the
    scheduler takes frames), so another stream's new frame wakes only the scheduler, not every waiting capture.
    """

    def __init__(
        self,
        cfg: StreamConfig,
        source: FrameSource,
        ring: FrameRing,
        doorbell: threading.Condition,
        figures: StreamFigures,
        prepare: Callable[[Frame], None] | None = None,
        room: threading.Condition | None = None,
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.source = source
        self.ring = ring
        self.figures = figures
        self._doorbell = doorbell
        self._room = doorbell if room is None else room
        self._prepare = prepare
        # A source paced slower than stall_s waits that long in read() by design: not a stall below two frames.
        source_fps = getattr(cfg.source, "fps", None)
        self._stall_s = max(cfg.stall_s, 2.0 / source_fps) if source_fps else cfg.stall_s
        self._stop = threading.Event()
        self._pacer = Pacer(cfg.max_fps, self._stop)
        figures.pacer = self._pacer
        self._kicked = threading.Event()
        # When the current read() started (perf_counter); None while not reading. The stall watchdog reads it.
        self._reading_since: float | None = None
        self.ended = False
        self._thread = threading.Thread(target=self._run, name=f"stream-{cfg.name}", daemon=True)

    def start(self) -> None:
        """Start reading on the stream's own thread."""
        self._thread.start()

    def halt(self) -> None:
        """Ask the thread to stop without waiting for it (a removed stream): it closes its source as it ends."""
        self._stop.set()
        self.source.interrupt()
        with self._doorbell:
            self._doorbell.notify_all()
            self._room.notify_all()

    def stop(self) -> None:
        """Stop reading and wait briefly; a read blocked in a driver is left to end with the process."""
        self.halt()
        if self._thread.ident is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("stream %s: capture thread is still blocked in a read; leaving it", self.name)
        self.ended = True

    def check_stall(self, now: float) -> bool:
        """Kick the stream into a reconnect when one read has blocked longer than stall_s; True when kicked."""
        since = self._reading_since
        if since is None or now - since <= self._stall_s or self._kicked.is_set():
            return False
        log.warning("stream %s: no frame for %.1f s; reconnecting", self.name, now - since)
        self._kicked.set()
        self.figures.error()
        self.source.interrupt()
        return True

    def _run(self) -> None:
        backoff = Backoff(self.cfg.source.reconnect_backoff_s, self.cfg.source.reconnect_max_s)
        opened = False
        try:
            while not self._stop.is_set():
                if not opened:
                    try:
                        self.source.open()
                    except SourceError as exc:
                        self.figures.error()
                        log.warning("stream %s: %s; retrying in %.3g s", self.name, exc, backoff.delay_s)
                        if backoff.wait(self._stop):
                            return
                        continue
                    opened = True
                    self._kicked.clear()
                    self.figures.connected = True
                frame, reason = self._read()
                if frame is None and reason is None:
                    log.info("stream %s: end of stream", self.name)
                    return
                if frame is None:
                    if self._stop.is_set():
                        return
                    self.figures.error()
                    self.figures.connected = False
                    self._close()
                    opened = False
                    log.warning("stream %s: %s; reconnecting in %.3g s", self.name, reason, backoff.delay_s)
                    if backoff.wait(self._stop):
                        return
                    continue
                backoff.reset()
                self._deliver(frame)
        finally:
            self._close()
            self.figures.connected = False
            self.ended = True
            with self._doorbell:
                self._doorbell.notify_all()

    def _read(self) -> tuple[Frame | None, str | None]:
        """(frame, None), or (None, why a reconnect is due), or (None, None) at a real end of stream."""
        self._reading_since = time.perf_counter()
        try:
            frame = self.source.read()
        except SourceError as exc:
            return None, str(exc)
        except Exception:  # a source bug must not end the stream: logged with its traceback, then reconnected
            log.exception("stream %s: unexpected error while reading", self.name)
            return None, "unexpected error"
        finally:
            self._reading_since = None
        if frame is None and (self._kicked.is_set() or self._stop.is_set()):
            return None, "stalled"
        return frame, None

    def _deliver(self, frame: Frame) -> None:
        self.figures.captured()
        if not self._pacer.admit(frame, self.source.live):
            return
        if self._prepare is not None:
            try:
                self._prepare(frame)
            except Exception as exc:  # noqa: BLE001 - the scheduler preprocesses it again and reports the error
                frame.tensor = None
                log.debug("stream %s: frame %d not preprocessed ahead: %s", self.name, frame.index, exc)
        ring, doorbell = self.ring, self._doorbell
        with doorbell:
            if ring.policy == "fifo":
                while ring.full and not self._stop.is_set():
                    self._room.wait(ROOM_POLL_S)
                if self._stop.is_set():
                    return
            ring.put(frame)
            doorbell.notify_all()

    def _close(self) -> None:
        try:
            self.source.close()
        except (SourceError, OSError) as exc:
            log.warning("stream %s: error while closing: %s", self.name, exc)
