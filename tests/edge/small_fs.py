"""A real, small tmpfs that tests can fill to the last byte and free again, to put the outbox on a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallFs:
    """A mounted tmpfs; fill() takes every free byte with a filler file, free() gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer could still use."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Grow the filler until the filesystem refuses one more byte; returns the bytes it took."""
        taken = 0
        with self.filler.open("ab", buffering=0) as f:
            for chunk in (1 << 16, 4096, 1):
                block = b"\0" * chunk
                while True:
                    try:
                        taken += f.write(block) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        assert self.free_bytes() == 0, f"{self.path} still has {self.free_bytes()} bytes free after filling"
        return taken

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink(missing_ok=True)


@contextmanager
def small_tmpfs(path: Path, size_kib: int) -> Iterator[SmallFs]:
    """Mount a tmpfs of size_kib at path (needs root, as these test machines run) and unmount it afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path} (full-disk tests need root): {done.stderr.strip()}")
    try:
        yield SmallFs(path)
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
