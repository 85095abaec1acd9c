"""Which inference results become MQTT events (a pure policy) and the emitter that publishes them.

Modes (EventsConfig.mode):
- every: one 'frame' event per result.
- change: Frigate-shaped lifecycle: 'new' for the first result, 'update' (before/after) when the top-1 label
  changes, 'end' (before = last result) when the stream finishes; results with the same label send nothing.
- threshold: a 'frame' event for each result whose top-1 score is at or above the threshold.
- sample: a 'frame' event for the 1st, (N+1)th, (2N+1)th... result.
- off: nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge.config import EventsConfig
from edge.link.base import Link
from edge.telemetry import EnvelopeFactory
from shared.errors import EdgeferryError
from shared.payloads import Detection, EventPayload
from shared.streams import DEFAULT_STREAM

EventType = Literal["new", "update", "end", "frame"]


@dataclass(frozen=True)
class EventDecision:
    """An event to send: its type and the before/after results."""

    type: EventType
    before: Detection | None = None
    after: Detection | None = None


class EventPolicy:
    """Decides per result whether an event is due; no I/O, one instance per result stream (not thread-safe)."""

    def __init__(self, cfg: EventsConfig) -> None:
        self.cfg = cfg
        self._current: Detection | None = None
        self._seen = 0

    def decide(self, result: Detection) -> EventDecision | None:
        """The event this result triggers, or None."""
        mode = self.cfg.mode
        index = self._seen
        self._seen += 1
        if mode == "off":
            return None
        if mode == "every":
            return EventDecision("frame", after=self._trim(result))
        if mode == "threshold":
            return EventDecision("frame", after=self._trim(result)) if result.score >= self.cfg.threshold else None
        if mode == "sample":
            return EventDecision("frame", after=self._trim(result)) if index % self.cfg.sample_every == 0 else None
        return self._change(result)

    def _change(self, result: Detection) -> EventDecision | None:
        before = self._current
        if before is None:
            self._current = self._trim(result)
            return EventDecision("new", after=self._current)
        if result.label == before.label:
            return None
        self._current = self._trim(result)
        return EventDecision("update", before=before, after=self._current)

    def finish(self) -> EventDecision | None:
        """The closing event when the stream ends ('end' in change mode after a 'new')."""
        if self.cfg.mode != "change" or self._current is None:
            return None
        before, self._current = self._current, None
        return EventDecision("end", before=before)

    def _trim(self, result: Detection) -> Detection:
        if len(result.top_k) <= self.cfg.top_k:
            return result
        return result.model_copy(update={"top_k": result.top_k[: self.cfg.top_k]})


class EventEmitter:
    """Runs results through the policy and queues the events on the link (never blocks the frame loop)."""

    def __init__(
        self, cfg: EventsConfig, link: Link, topic: str, envelopes: EnvelopeFactory, stream: str = DEFAULT_STREAM
    ) -> None:
        self.policy = EventPolicy(cfg)
        self.stream = stream
        self._link = link
        self._topic = topic
        self._envelopes = envelopes
        self._lock = threading.Lock()
        self._publish_many = link.publish_json_many
        # One emitter (one policy) per other stream, so 'change' follows each camera on its own.
        self._streams: dict[str, EventEmitter] = {}

    def for_stream(self, stream: str) -> EventEmitter:
        """The emitter of one stream's results: this one for its own stream, else one made once per name."""
        if stream == self.stream:
            return self
        with self._lock:
            emitter = self._streams.get(stream)
            if emitter is None:
                emitter = EventEmitter(self.policy.cfg, self._link, self._topic, self._envelopes, stream)
                self._streams[stream] = emitter
            return emitter

    def on_result(self, result: Detection) -> EventPayload | None:
        """Publish the event this result triggers; returns it (None when the policy sends nothing)."""
        with self._lock:
            decision = self.policy.decide(result)
            return self._send(decision)

    def on_results(self, results: Sequence[Detection]) -> list[EventPayload]:
        """Publish the events of several results in order, in one outbox transaction where the link batches."""
        with self._lock:
            decide, stamp = self.policy.decide, self._stamp
            events = [stamp(d) for d in map(decide, results) if d is not None]
            if len(events) > 1:
                try:
                    self._publish_many(self._topic, events)
                    return events
                except EdgeferryError:
                    pass  # nothing of the batch was queued: one by one below, so one bad payload costs only itself
            failed: EdgeferryError | None = None
            for event in events:
                try:
                    self._link.publish_json(self._topic, event)
                except EdgeferryError as exc:
                    failed = failed or exc
            if failed is not None:
                raise failed
            return events

    def finish(self) -> EventPayload | None:
        """Publish the closing event, if the mode has one (every other stream's too); returns this stream's."""
        with self._lock:
            others = list(self._streams.values())
            event = self._send(self.policy.finish())
        for emitter in others:
            emitter.finish()
        return event

    def _send(self, decision: EventDecision | None) -> EventPayload | None:
        if decision is None:
            return None
        event = self._stamp(decision)
        self._link.publish_json(self._topic, event)
        return event

    def _stamp(self, decision: EventDecision) -> EventPayload:
        return self._envelopes.stamp(EventPayload, type=decision.type, stream=self.stream, before=decision.before,
                                     after=decision.after)
