"""Results become events in frame order, on the frame thread when it is idle and batched on the results thread
when frames wait; the observer sees a result only once its event is queued on the link."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from edge.config import EventsConfig
from edge.detection.config import DetectionConfig
from edge.detection.service import DetectionService
from edge.events import EventEmitter
from edge.link.base import encode_json
from edge.pipeline import FrameResult
from edge.postprocess import Prediction
from edge.result_publisher import ResultPublisher
from edge.supervise import Health
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectTopics
from shared.tasks import Detection
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink

TOPIC = "edgeferry/lab/cam-1/events"


class BatchingFakeLink(FakeLink):
    """A FakeLink that also takes batches (as MqttLink does), recording each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def publish_json_many(self, topic: str, payloads: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Record the batch, then each message like publish_json."""
        self.batches.append(len(payloads))
        for p in payloads:
            self.publish_text(topic, encode_json(p).decode())


def result(index: int, backlog: bool = False) -> FrameResult:
    return FrameResult(index, 0.0, "test", 1, Prediction(index, str(index % 10), 0.9, ((str(index % 10), 0.9),)),
                       backlog)


def frames_on(link: FakeLink) -> list[int]:
    return [json.loads(p.payload)["after"]["frame"] for p in link.published if p.topic == TOPIC]


def publisher(link: FakeLink, observed: list[tuple[int, int]] | None = None) -> ResultPublisher:
    def observe(r: FrameResult) -> None:
        if observed is not None:
            observed.append((r.index, len(frames_on(link))))

    emitter = EventEmitter(EventsConfig(mode="every"), link, TOPIC, EnvelopeFactory("cam-1"))
    return ResultPublisher(emitter, Health(), observer=observe)


def test_an_idle_frame_loop_publishes_on_its_own_thread_before_submit_returns() -> None:
    link = FakeLink()
    observed: list[tuple[int, int]] = []
    pub = publisher(link, observed)
    for i in range(3):
        pub.submit(result(i))
        assert frames_on(link) == list(range(i + 1)), "published inline, without the results thread"
    assert observed == [(0, 1), (1, 2), (2, 3)] and pub.last is not None and pub.last.index == 2


def test_a_backlog_goes_to_the_results_thread_in_one_batch_and_frame_order_holds_across_both_paths() -> None:
    link = BatchingFakeLink()
    observed: list[tuple[int, int]] = []
    pub = publisher(link, observed)
    pub.submit(result(0))  # idle: inline
    for i in range(1, 6):
        pub.submit(result(i, backlog=True))  # frames waiting: queued, nothing published yet
    assert frames_on(link) == [0]
    pub.submit(result(6))  # idle again, but queued results are ahead of it: it must not overtake them
    assert frames_on(link) == [0]
    pub.finish()
    thread = threading.Thread(target=pub.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert frames_on(link) == list(range(7))
    assert link.batches == [6], "the six queued results share one outbox transaction"
    # Each result was observed only after its own event was on the link.
    assert all(published >= index + 1 for index, published in observed)
    assert [i for i, _ in observed] == list(range(7))


def test_events_off_still_counts_quality_and_observes_every_result() -> None:
    link = FakeLink()
    observed: list[tuple[int, int]] = []
    emitter = EventEmitter(EventsConfig(mode="off"), link, TOPIC, EnvelopeFactory("cam-1"))
    pub = ResultPublisher(emitter, Health(), observer=lambda r: observed.append((r.index, 0)))
    for i in range(4):
        pub.submit(result(i, backlog=i % 2 == 0))
    pub.finish()
    pub.run()
    assert frames_on(link) == [] and [i for i, _ in observed] == [0, 1, 2, 3]
    assert pub.quality.metrics()["results_window"] == 4.0
    assert pub.quality.class_counts() == {"0": 1, "1": 1, "2": 1, "3": 1}


def test_a_publishing_bug_on_the_frame_thread_counts_as_a_results_failure_and_the_next_result_goes_on() -> None:
    link = FakeLink()
    health = Health()
    emitter = EventEmitter(EventsConfig(mode="every"), link, TOPIC, EnvelopeFactory("cam-1"))
    pub = ResultPublisher(emitter, health)
    real = emitter.on_result
    calls = iter([KeyError("bug"), None, None])

    def flaky(d: Any) -> Any:
        exc = next(calls)
        if exc is not None:
            raise exc
        return real(d)

    emitter.on_result = flaky  # type: ignore[method-assign, assignment]
    pub.submit(result(0))  # must not raise into the frame loop
    assert health.errors("results") == 1 and "results" in health.degraded()
    pub.submit(result(1))
    assert frames_on(link) == [1] and health.degraded() == {}


def detector_publisher(link: FakeLink, topics: DeviceTopics, primary: str | None = None) -> ResultPublisher:
    """A publisher with a detection service on the link, as the agent wires it."""
    envelopes = EnvelopeFactory(topics.device_id)
    service = DetectionService(DetectionConfig(), link, topics, envelopes)
    return ResultPublisher(EventEmitter(EventsConfig(mode="every"), link, TOPIC, envelopes), Health(),
                           detection=service, primary=primary)


def _det_result(index: int, version: int, boxes: list[tuple[float, float, float, float]]) -> FrameResult:
    found = tuple(Detection("person", 0, 0.9, b) for b in boxes)
    return FrameResult(index, time.perf_counter(), "test", version, None, detections=found, task="detection")


def test_a_detectors_results_become_object_events_ended_by_a_model_change_and_the_end_of_the_stream() -> None:
    link, topics = FakeLink(), DeviceTopics("lab", "cam-1")
    pub = detector_publisher(link, topics)
    box = (10.0, 10.0, 30.0, 30.0)
    for i in range(4):
        pub.submit(_det_result(i, 1, [box]))
    # Another model version serves: its boxes are not the old tracks.
    for i in range(4, 8):
        pub.submit(_det_result(i, 2, [box]))
    pub.end_stream()
    events = [json.loads(p.payload) for p in link.published if p.topic == ObjectTopics(topics).events]
    assert [(e["type"], e["after"]["model_version"]) for e in events] == [
        ("new", 1), ("end", 1), ("new", 2), ("end", 2)
    ]
    # No classification result events for a detector, and its figures are reported, zone counts included.
    assert not [p for p in link.published if p.topic == TOPIC]
    figures = pub.metrics()
    assert figures["det_frames_window"] == figures["results_window"] == 8.0 and pub.class_counts() == {"person": 8}
    assert pub.zone_counts() is None  # the stream ended: no detector serves


def test_a_classifier_after_a_detector_ends_its_objects_and_publishes_result_events() -> None:
    link, topics = FakeLink(), DeviceTopics("lab", "cam-1")
    pub = detector_publisher(link, topics)
    for i in range(3):
        pub.submit(_det_result(i, 1, [(0.0, 0.0, 20.0, 20.0)]))
    assert pub.zone_counts() == {}
    pub.submit(result(3))
    types = [json.loads(p.payload)["type"] for p in link.published if p.topic == ObjectTopics(topics).events]
    assert types == ["new", "end"] and frames_on(link) == [3]
    assert "det_frames_window" in pub.metrics() and pub.zone_counts() is None
    assert "det_frames_window" not in pub.metrics()  # a classifier serves and no detector frame came


def test_a_detector_and_another_model_interleaved_keep_their_own_sinks_and_the_tracks_go_on() -> None:
    """`models:`: a detector on the cameras and a classifier elsewhere take turns in the results; neither's results
    end the other's (the tracked object stays one object, never 'end' then 'new' at each turn)."""
    link, topics = FakeLink(), DeviceTopics("lab", "cam-1")
    pub = detector_publisher(link, topics)
    box = (10.0, 10.0, 30.0, 30.0)
    for i in range(0, 8, 2):
        pub.submit(replace(_det_result(i, 1, [box]), model="people", stream="gate"))
        pub.submit(replace(result(i + 1), model="parts", stream="shelf"))
    assert pub.zone_counts() == {}  # the detector still serves, though a classifier's result came last
    pub.end_stream()
    events = [json.loads(p.payload) for p in link.published if p.topic == ObjectTopics(topics).events]
    assert [(e["type"], e["stream"]) for e in events] == [("new", "gate"), ("end", "gate")]
    assert frames_on(link) == [1, 3, 5, 7]
    figures = pub.metrics()
    assert figures["det_frames_window"] == 4.0 and figures["results_window"] == 8.0  # no sync.model named: all count


def test_with_further_models_the_window_counts_sync_models_results_alone() -> None:
    """A rollout of the detector (sync.model) is judged on its own frames: a busy side model's results must not fill
    its evidence (results_window) while the detector saw few frames."""
    link, topics = FakeLink(), DeviceTopics("lab", "cam-1")
    pub = detector_publisher(link, topics, primary="people")
    for i in range(6):
        pub.submit(replace(result(i), model="parts", stream="shelf"))
    assert pub.metrics()["results_window"] == 0.0  # the detector has not served a frame yet
    pub.submit(replace(_det_result(6, 1, [(10.0, 10.0, 30.0, 30.0)]), model="people", stream="gate"))
    for i in range(7, 12):
        pub.submit(replace(result(i), model="parts", stream="shelf"))
    figures = pub.metrics()
    assert figures["results_window"] == 1.0 and figures["det_frames_window"] == 1.0
    assert pub.class_counts() == {"person": 1}  # and the class mix is the detector's, not the side model's labels
    # Alone again (only sync.model's results in the window), every result counts as before.
    pub.end_stream()
    for i in range(12, 15):
        pub.submit(replace(result(i), model="people"))
    assert pub.metrics()["results_window"] == 3.0


def test_a_stream_dropped_by_one_model_ends_only_what_that_models_task_followed_there() -> None:
    """A camera moved from the classifier to the detector: the classifier's removal of it (after its last results)
    must not end the object the detector already follows there; the detector's own removal does."""
    link, topics = FakeLink(), DeviceTopics("lab", "cam-1")
    pub = detector_publisher(link, topics, primary="people")
    thread = threading.Thread(target=pub.run, daemon=True)
    thread.start()
    box = (10.0, 10.0, 30.0, 30.0)
    pub.submit(replace(result(0), model="parts", stream="gate"))
    pub.submit(replace(_det_result(1, 1, [box]), model="people", stream="gate"))
    pub.drop_stream("parts", "gate")
    pub.submit(replace(_det_result(2, 1, [box]), model="people", stream="gate"))
    pub.drop_stream("people", "gate")
    pub.finish()
    thread.join(10)
    kinds = [json.loads(p.payload)["type"] for p in link.published if p.topic == ObjectTopics(topics).events]
    assert kinds == ["new", "end"], "one object, ended once: by the detector's removal of the stream"
