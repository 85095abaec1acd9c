"""Images in a directory, in name order; undecodable files are skipped and counted, never fatal."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from edge.errors import SourceError
from edge.sources.base import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
# Enough warnings to see what is wrong without flooding the log on a directory of junk.
_MAX_WARNINGS = 10


class ImageDirSource:
    """Reads each image as 3-channel BGR uint8, like a camera frame."""

    live = False

    def __init__(self, path: Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self.name = f"image_dir:{self.path}"
        self.skipped = 0
        self._files: list[Path] = []
        self._next = 0
        self._index = 0

    def open(self) -> None:
        """List the images; SourceError when the directory is missing or holds none."""
        if not self.path.is_dir():
            raise SourceError(f"image directory {self.path} does not exist or is not a directory")
        try:
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise SourceError(f"cannot list image directory {self.path}: {exc.strerror}") from exc
        if not files:
            raise SourceError(f"image directory {self.path} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} files")
        self._files = files
        self._next = min(self._next, len(files))

    def read(self) -> Frame | None:
        """The next decodable image; None after the last one unless looping."""
        misses = 0
        while True:
            if self._next >= len(self._files):
                # A looping pass over only broken files would spin forever.
                if not self.loop or misses >= len(self._files):
                    return None
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                misses += 1
                self._skip(path)
                continue
            index = self._index
            self._index += 1
            return Frame(index, image, time.perf_counter(), self.name)

    def interrupt(self) -> None:
        """Nothing to do: a read never blocks for long."""

    def close(self) -> None:
        """Nothing is held open between reads."""

    def _skip(self, path: Path) -> None:
        self.skipped += 1
        if self.skipped <= _MAX_WARNINGS:
            log.warning("skipping %s: not a decodable image (%d skipped so far)", path.name, self.skipped)
