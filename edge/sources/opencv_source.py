"""Video files, V4L2 cameras and RTSP/HTTP streams, all decoded by OpenCV (FFmpeg/V4L2 back-ends)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edge.errors import SourceError
from edge.sources.base import Frame

log = logging.getLogger(__name__)

Kind = Literal["file", "camera", "stream"]
# Bounds how long a dead stream can block the capture thread, so reconnects happen.
STREAM_TIMEOUT_MS = 5000


def redact_url(url: str) -> str:
    """The URL without user:password, safe for logs and telemetry."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def camera_target(device: str) -> int | str:
    """An index for '0'/'1', the device path otherwise."""
    return int(device) if device.isdigit() else device


class OpenCvSource:
    """One cv2.VideoCapture; files end, cameras and streams only fail (and get reconnected)."""

    def __init__(self, kind: Kind, target: int | str, *, loop: bool = False) -> None:
        self.kind = kind
        self.target = target
        self.loop = loop and kind == "file"
        self.live = kind != "file"
        self.skipped = 0
        shown = redact_url(target) if isinstance(target, str) and kind == "stream" else target
        self.name = f"{kind}:{shown}"
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._index = 0
        self._position = 0  # frames of the file already handed out, so a reopen resumes there

    def open(self) -> None:
        """Open and decode one frame, so an unreadable source fails here and not later."""
        self.close()
        self._check_exists()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}: {self._hint()}")
        if self.kind == "file" and self._position:
            cap.set(cv2.CAP_PROP_POS_FRAMES, float(self._position))
        ok, image = cap.read()
        if not ok or image is None:
            cap.release()
            if self.kind == "file" and self._position:
                raise SourceError(f"cannot resume {self.name} at frame {self._position}: {self._hint()}")
            raise SourceError(f"{self.name} opened but gave no frame: {self._hint()}")
        self._cap = cap
        self._pending = image

    def read(self) -> Frame | None:
        """Next decoded frame; None at the end of a non-looping file."""
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        image = self._pending
        self._pending = None
        if image is None:
            ok, image = self._cap.read()
            if not ok or image is None:
                if self.kind != "file":
                    raise SourceError(f"{self.name} stopped delivering frames (unplugged or stream dropped)")
                if not self.loop or self._position == 0:
                    return None
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0.0)
                self._position = 0
                ok, image = self._cap.read()
                if not ok or image is None:
                    raise SourceError(f"{self.name} could not restart at its first frame")
        captured = time.perf_counter()
        index = self._index
        self._index += 1
        self._position += 1
        return Frame(index, image, captured, self.name)

    def interrupt(self) -> None:
        """Nothing to do: reads return within a frame time or the stream timeout."""

    def close(self) -> None:
        """Release the capture."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None

    def _check_exists(self) -> None:
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise SourceError(f"video file {self.target} does not exist or is not a file")
        if self.kind == "camera" and isinstance(self.target, str) and not Path(self.target).exists():
            raise SourceError(f"camera {self.target} does not exist (is it plugged in? see `v4l2-ctl --list-devices`)")

    def _capture(self) -> cv2.VideoCapture:
        if self.kind == "camera":
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(self.target, api)
            # One buffered frame: a slow consumer then sees a fresh frame, not a queue of old ones.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1.0)
            return cap
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        return cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)

    def _hint(self) -> str:
        if self.kind == "file":
            return "OpenCV/FFmpeg cannot decode it (corrupt file or unsupported codec)"
        if self.kind == "camera":
            return "the device is busy, unplugged or not a V4L2 capture device"
        return "the stream is unreachable, needs other credentials, or uses an unsupported codec"
