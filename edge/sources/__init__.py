"""Frame and sensor sources behind one small interface; `open_source` picks one from the config."""

from edge.sources.base import Frame, FrameSource
from edge.sources.factory import open_source

__all__ = ["Frame", "FrameSource", "open_source"]
