"""Snapshots kept on disk within a byte and file budget, oldest evicted; each write is atomic (temp, fsync, rename).

A crash leaves either the previous file or the new one, never a torn JPEG; leftover temp files are removed on open.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edge.errors import SnapshotError
from shared.names import check_file_name

SUFFIX = ".jpg"
TEMP_PREFIX = ".tmp-"


class SnapshotStore:
    """A directory of <object id>.jpg files within max_bytes and max_files."""

    def __init__(self, directory: Path, max_bytes: int, max_files: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_files = max_files
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob(f"{TEMP_PREFIX}*"):
                stale.unlink(missing_ok=True)
            found = [(p.stat().st_mtime_ns, p.name, p.stat().st_size) for p in directory.glob(f"*{SUFFIX}")]
        except OSError as exc:
            raise SnapshotError(f"cannot use snapshot directory {directory}: {exc}") from exc
        # name -> size, in age order (oldest first): dicts keep insertion order, and a rewrite moves to the end.
        self._files: dict[str, int] = {name: size for _, name, size in sorted(found)}
        self._used = sum(self._files.values())
        self._evict()

    @property
    def used_bytes(self) -> int:
        """Bytes the kept snapshots take."""
        return self._used

    def names(self) -> list[str]:
        """Kept file names, oldest first."""
        return list(self._files)

    def save(self, object_id: str, jpeg: bytes) -> Path:
        """Write (or replace) an object's snapshot atomically, then evict the oldest beyond the budget."""
        name = check_file_name(f"{object_id}{SUFFIX}")
        if len(jpeg) > self.max_bytes:
            raise SnapshotError(f"snapshot of {len(jpeg)} bytes exceeds the whole disk budget of {self.max_bytes}")
        path = self.directory / name
        tmp = self.directory / f"{TEMP_PREFIX}{name}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(jpeg)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise SnapshotError(f"cannot write snapshot {path}: {exc}") from exc
        self._used += len(jpeg) - self._files.pop(name, 0)
        self._files[name] = len(jpeg)
        self._evict()
        return path

    def _evict(self) -> None:
        while self._files and (len(self._files) > self.max_files or self._used > self.max_bytes):
            oldest = next(iter(self._files))
            try:
                (self.directory / oldest).unlink(missing_ok=True)
            except OSError as exc:
                raise SnapshotError(f"cannot evict snapshot {self.directory / oldest}: {exc}") from exc
            self._used -= self._files.pop(oldest)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
