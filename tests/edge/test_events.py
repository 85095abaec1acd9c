"""Event policy per mode (pure) and the emitter that turns results into enveloped MQTT events."""

from __future__ import annotations

from edge.config import EventsConfig
from edge.events import EventDecision, EventEmitter, EventPolicy
from edge.telemetry import EnvelopeFactory
from shared.payloads import Detection
from tests.edge.fake_link import FakeLink


def det(label: str, score: float = 0.9, frame: int = 0, k: int = 5) -> Detection:
    top = [(label, score)] + [(f"other{i}", 0.01) for i in range(k - 1)]
    return Detection(label=label, score=score, top_k=top, frame=frame, model_version=2)


def run(mode: str, results: list[Detection], **kw: object) -> list[EventDecision | None]:
    policy = EventPolicy(EventsConfig(mode=mode, **kw))  # type: ignore[arg-type]
    return [policy.decide(r) for r in results] + [policy.finish()]


def test_change_mode_follows_the_frigate_lifecycle() -> None:
    a0, a1, b2, b3, a4 = det("3", frame=0), det("3", frame=1), det("7", frame=2), det("7", frame=3), det("3", frame=4)
    out = run("change", [a0, a1, b2, b3, a4])
    kinds = [(d.type, d.before and d.before.frame, d.after and d.after.frame) if d else None for d in out]
    assert kinds == [
        ("new", None, 0),
        None,
        ("update", 0, 2),
        None,
        ("update", 2, 4),
        ("end", 4, None),
    ]


def test_change_mode_without_results_sends_no_end() -> None:
    assert run("change", []) == [None]


def test_every_mode_sends_each_result_as_a_frame_event() -> None:
    out = run("every", [det("1", frame=i) for i in range(3)])
    assert [(d.type, d.after.frame) for d in out if d and d.after] == [("frame", 0), ("frame", 1), ("frame", 2)]
    assert out[-1] is None


def test_threshold_mode_sends_only_confident_results() -> None:
    out = run("threshold", [det("1", 0.2), det("2", 0.5), det("3", 0.49), det("4", 0.99)], threshold=0.5)
    assert [d.after.label if d and d.after else None for d in out] == [None, "2", None, "4", None]


def test_sample_mode_sends_every_nth_starting_with_the_first() -> None:
    out = run("sample", [det("1", frame=i) for i in range(7)], sample_every=3)
    assert [d.after.frame for d in out if d and d.after] == [0, 3, 6]


def test_off_mode_sends_nothing() -> None:
    assert run("off", [det("1"), det("2")]) == [None, None, None]


def test_results_are_trimmed_to_top_k() -> None:
    (d, _) = run("every", [det("1", k=10)], top_k=3)
    assert d is not None and d.after is not None and len(d.after.top_k) == 3


def test_emitter_publishes_enveloped_events_in_seq_order() -> None:
    link = FakeLink()
    envelopes = EnvelopeFactory("cam-5")
    emitter = EventEmitter(EventsConfig(mode="change"), link, "edgeferry/lab/cam-5/events", envelopes)
    assert emitter.on_result(det("1", frame=0)) is not None
    assert emitter.on_result(det("1", frame=1)) is None
    emitter.on_result(det("2", frame=2))
    link.set_connected(False)
    emitter.finish()
    sent = [p.json() for p in link.on("edgeferry/lab/cam-5/events")]
    assert [(e["type"], e["seq"], e["replayed"]) for e in sent] == [
        ("new", 0, False), ("update", 1, False), ("end", 2, True)
    ]
    assert sent[1]["before"]["label"] == "1" and sent[1]["after"]["label"] == "2"
    assert sent[2]["before"]["label"] == "2" and sent[2]["after"] is None
    assert all(e["device_id"] == "cam-5" and e["boot_id"] == envelopes.boot_id for e in sent)
