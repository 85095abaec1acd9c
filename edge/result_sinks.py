"""Where one task's results go: classification results become result events, a detector's objects become
tracked object events, snapshots and zone counts. The result publisher picks the sink once per model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from edge.detection.service import DetectionService
from edge.events import EventEmitter
from edge.pipeline import FrameResult
from edge.quality import QualityWindow
from shared.errors import EdgeferryError
from shared.payloads import Detection

log = logging.getLogger(__name__)


class ResultSink(Protocol):
    """Publishes one task's results, in frame order, on the results thread."""

    def start_model(self, version: int) -> None:
        """Results of this model version follow (the first ones, or after a model change)."""
        ...

    def publish(self, results: Sequence[FrameResult]) -> None:
        """Publish consecutive results of one model."""
        ...

    def finish(self) -> None:
        """No more results of this task follow (the stream stopped, or a model of another task serves)."""
        ...

    def drop_stream(self, stream: str) -> None:
        """A stream this model served was removed (or moved to another model): what it followed ends."""
        ...


def _frames(results: Sequence[FrameResult]) -> str:
    return f"{results[0].index}" if len(results) == 1 else f"{results[0].index}-{results[-1].index}"


class ClassificationSink:
    """Top-1 results as result events (per the events policy) and the window's confidence figures."""

    def __init__(self, events: EventEmitter) -> None:
        # Replaced whole by live config (events.*); read once per batch.
        self.events = events
        self.quality = QualityWindow()

    def start_model(self, version: int) -> None:
        """Nothing is followed across frames."""

    def publish(self, results: Sequence[FrameResult]) -> None:
        """Count each result and hand it to its stream's events policy."""
        events, quality = self.events, self.quality
        by_stream: dict[str, list[Detection]] = {}
        for result in results:
            p = result.prediction
            if p is None:
                continue
            quality.add(p.label, p.score)
            by_stream.setdefault(result.stream, []).append(
                Detection(label=p.label, score=p.score, top_k=list(p.top_k), frame=result.index,
                          model_version=result.version)
            )
        if events.policy.cfg.mode == "off":
            return
        for stream, detections in by_stream.items():
            emitter = events.for_stream(stream)
            try:
                if len(detections) == 1:
                    emitter.on_result(detections[0])
                else:
                    emitter.on_results(detections)
            except EdgeferryError as exc:
                log.warning("results of frame %s not published: %s", _frames(results), exc)

    def finish(self) -> None:
        """Result events need no ending."""

    def drop_stream(self, stream: str) -> None:
        """Nothing is followed per stream."""


class DetectionSink:
    """A detector's boxes tracked into object events, snapshots, zone counts and detection figures."""

    def __init__(self, service: DetectionService) -> None:
        self.service = service

    def start_model(self, version: int) -> None:
        """Another model's boxes are not the old one's tracks: followed objects end, tracking restarts."""
        self.service.new_model(version)

    def publish(self, results: Sequence[FrameResult]) -> None:
        """Track each frame's objects in frame order, each stream apart (the image only where snapshots are taken)."""
        service = self.service
        try:
            for result in results:
                image = result.image if service.stream_cfg(result.stream).snapshots.enabled else None
                service.on_frame(result.detections or (), result.index, result.captured_at, image, result.stream)
        except EdgeferryError as exc:
            log.warning("object events of frame %s not published: %s", _frames(results), exc)

    def finish(self) -> None:
        """Every followed object ends."""
        self.service.finish()

    def drop_stream(self, stream: str) -> None:
        """The stream's followed objects end and its lane goes."""
        self.service.drop_stream(stream)
