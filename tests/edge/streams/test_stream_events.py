"""Each stream's results make their own events: 'change' follows each camera's label on its own, and every event
says which stream it is from."""

from __future__ import annotations

from edge.config import EventsConfig
from edge.events import EventEmitter
from edge.pipeline import FrameResult
from edge.postprocess import Prediction
from edge.result_publisher import ResultPublisher
from edge.supervise import Health
from edge.telemetry import EnvelopeFactory
from tests.edge.fake_link import FakeLink

TOPIC = "edgeferry/lab/cam-1/events"


def result(stream: str, index: int, label: str) -> FrameResult:
    p = Prediction(int(label), label, 0.9, ((label, 0.9),))
    return FrameResult(index, 0.0, "test", 1, p, True, stream=stream)


def test_change_events_follow_each_stream_on_its_own_and_name_it() -> None:
    link = FakeLink()
    emitter = EventEmitter(EventsConfig(mode="change"), link, TOPIC, EnvelopeFactory("cam-1"))
    pub = ResultPublisher(emitter, Health())
    # Interleaved streams: 'gate' keeps label 1, 'yard' goes 2 -> 3. Mixed into one policy, every frame would
    # look like a label change.
    for r in [result("gate", 0, "1"), result("yard", 0, "2"), result("gate", 1, "1"), result("yard", 1, "2"),
              result("gate", 2, "1"), result("yard", 2, "3")]:
        pub.submit(r)
    pub.finish()
    pub.run()
    pub.events.finish()
    sent = [p.json() for p in link.on(TOPIC)]
    seen = [(e["stream"], e["type"], (e["after"] or e["before"])["label"]) for e in sent]
    assert seen[:3] == [("gate", "new", "1"), ("yard", "new", "2"), ("yard", "update", "3")]
    assert sorted(seen[3:]) == [("gate", "end", "1"), ("yard", "end", "3")]


def test_a_single_source_agents_events_say_default() -> None:
    link = FakeLink()
    pub = ResultPublisher(EventEmitter(EventsConfig(mode="every"), link, TOPIC, EnvelopeFactory("cam-1")), Health())
    pub.submit(FrameResult(0, 0.0, "test", 1, Prediction(1, "1", 0.9, (("1", 0.9),))))
    assert [p.json()["stream"] for p in link.on(TOPIC)] == ["default"]
