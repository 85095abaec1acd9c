"""Sliding windows over numeric sensor rows: the one implementation lives in shared.windowing (trainer and device)."""

from __future__ import annotations

from shared.windowing import RowWindow

__all__ = ["RowWindow"]
