"""The result sink of anomaly models: each window's score goes to the AnomalyService (alerts, sensor figures)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from edge.pipeline import FrameResult
from edge.sensor.service import AnomalyService
from shared.errors import EdgeferryError

log = logging.getLogger(__name__)


class AnomalySink:
    """Window scores, in frame order, to the k-of-n alert rule."""

    def __init__(self, service: AnomalyService) -> None:
        self.service = service

    def start_model(self, version: int) -> None:
        """The agent configured the service for the model when it swapped it in; nothing to restart here."""

    def publish(self, results: Sequence[FrameResult]) -> None:
        """Each window's score through the alert rule."""
        try:
            for result in results:
                if result.anomaly is not None:
                    self.service.on_window(result.anomaly, result.index, result.stream)
        except EdgeferryError as exc:
            log.warning("anomaly alerts of windows %d-%d not published: %s", results[0].index, results[-1].index, exc)

    def finish(self) -> None:
        """An open alert ends with the stream (or when a model of another task serves)."""
        self.service.finish()

    def drop_stream(self, stream: str) -> None:
        """The stream's open alert ends and its rule state goes."""
        self.service.drop_stream(stream)
