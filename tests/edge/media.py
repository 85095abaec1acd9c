"""Small media files for source tests: an MJPG .avi whose frame i is uniformly grey at level 10*i."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def level(i: int) -> int:
    """Grey level of frame i."""
    return (10 * i) % 250


def write_video(path: Path, frames: int, *, width: int = 64, height: int = 48, fps: float = 25.0) -> Path:
    """An MJPG AVI (decodable by every OpenCV build with FFmpeg)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("this OpenCV build cannot write MJPG .avi files")
    for i in range(frames):
        writer.write(np.full((height, width, 3), level(i), dtype=np.uint8))
    writer.release()
    return path


def frame_level(image: np.ndarray) -> int:
    """The grey level a decoded frame shows (MJPG is lossy by a few levels)."""
    return round(float(image.mean()))
