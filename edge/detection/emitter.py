"""Publishes what the object processor decided: object events and snapshots through the link's durable outbox
(snapshots in their own lane, bounded in count and bytes), and snapshots onto disk within their budget (a disk
problem never stops events)."""

from __future__ import annotations

import base64
import logging

from edge.detection.processor import FrameObjects
from edge.detection.snapshot_store import SnapshotStore
from edge.errors import SnapshotError
from edge.link.base import Link
from edge.link.lanes import LaneBudget
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload, ObjectTopics, SnapshotPayload
from shared.streams import DEFAULT_STREAM

log = logging.getLogger(__name__)


class ObjectEventEmitter:
    """Stamps and queues object events (one outbox transaction per frame) and snapshots."""

    def __init__(
        self,
        link: Link,
        topics: ObjectTopics,
        envelopes: EnvelopeFactory,
        store: SnapshotStore | None = None,
        events_enabled: bool = True,
        snapshot_budget: LaneBudget | None = None,
        stream: str = DEFAULT_STREAM,
    ) -> None:
        self._link = link
        self._stream = stream
        self._topics = topics
        self._envelopes = envelopes
        self._store = store
        self._events_enabled = events_enabled
        # Snapshots are tens of KiB: they queue in their own outbox lane, so a long outage drops the oldest
        # snapshots (counted) instead of filling the disk or pushing events and telemetry out of the queue.
        self._snapshot_budget = snapshot_budget
        self.snapshot_errors = 0

    def publish(self, frame: FrameObjects) -> list[ObjectEventPayload]:
        """Queue the frame's events, then its snapshots; returns the events queued."""
        events: list[ObjectEventPayload] = []
        if self._events_enabled and frame.events:
            stamp = self._envelopes.stamp
            events = [stamp(ObjectEventPayload, type=e.type, stream=self._stream, before=e.before, after=e.after)
                      for e in frame.events]
            self._link.publish_json_many(self._topics.events, events)
        for snap in frame.snapshots:
            payload = self._envelopes.stamp(
                SnapshotPayload, object_id=snap.object_id, stream=self._stream, label=snap.best.label,
                score=min(1.0, snap.best.score),
                box=snap.best.box, crop=tuple(float(v) for v in snap.best.crop),
                frame_time_ms=snap.best.frame_time_ms, width=snap.jpeg.width, height=snap.jpeg.height,
                jpeg=base64.b64encode(snap.jpeg.data).decode("ascii"),
            )
            self._link.publish_json(self._topics.snapshot(snap.object_id), payload, budget=self._snapshot_budget)
            if self._store is not None:
                try:
                    self._store.save(snap.object_id, snap.jpeg.data)
                except SnapshotError as exc:
                    self.snapshot_errors += 1
                    log.warning("snapshot of object %s not kept on disk: %s", snap.object_id, exc)
        return events
