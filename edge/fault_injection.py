"""Named crash points in the install path, so tests can prove a kill -9 anywhere leaves a servable cache."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "EDGEFERRY_CRASH_AT"

# In the order an install reaches them.
CRASH_POINTS: tuple[str, ...] = (
    "after-manifest",  # manifest + signature written into staging
    "after-download",  # every payload file downloaded, not yet hashed
    "after-verify",  # signature, sha256 and ONNX guard passed in staging
    "after-fsync",  # staged files and directory fsynced
    "after-rename",  # staging dir renamed into versions/
    "after-pointer-temp",  # new current.json written to its temp file, not yet renamed
    "after-pointer",  # current.json replaced
    "during-prune",  # an old version moved out of versions/, not yet deleted
)


def crash_point(name: str) -> None:
    """SIGKILL this process when EDGEFERRY_CRASH_AT names this point; a no-op otherwise."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
