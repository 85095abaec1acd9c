"""Object events follow each object's life: new, update on meaningful change only, end after it is lost."""

from __future__ import annotations

from edge.detection.config import (
    DetectionConfig,
    ObjectEventsConfig,
    ObjectFilter,
    StationaryConfig,
    TrackerConfig,
    ZoneConfig,
)
from edge.detection.lifecycle import ObjectEventDecision, ObjectLifecycle
from edge.detection.tracker import ByteTracker
from shared.tasks.detection import Detection
from tests.edge.detection.scenes import Walker

ZONE = [(200.0, 0.0), (400.0, 0.0), (400.0, 480.0), (200.0, 480.0)]
T0 = 1_700_000_000_000


def run(cfg: DetectionConfig, frames: list[list[Detection]], fps: float = 10.0) -> list[ObjectEventDecision]:
    tracker, life = ByteTracker(cfg.tracker), ObjectLifecycle(cfg, model_version=3)
    out: list[ObjectEventDecision] = []
    for f, dets in enumerate(frames):
        out += life.step(tracker.update(dets), f, T0 + int(f * 1000 / fps))
    return out + life.finish(T0 + int(len(frames) * 1000 / fps))


def config(**kw: object) -> DetectionConfig:
    base: dict[str, object] = {
        "zones": {"yard": ZoneConfig(coordinates=ZONE, inertia=2)},
        "tracker": TrackerConfig(lost_frames=5),
    }
    base.update(kw)
    return DetectionConfig(**base)  # type: ignore[arg-type]


def test_an_object_crossing_a_zone_sends_new_enter_leave_and_end_only() -> None:
    w = Walker("a", "person", (0, 100), (10, 0))  # feet from x=20 to x=620 over 60 frames
    frames = [[w.det(f)] for f in range(60)] + [[] for _ in range(8)]
    events = run(config(), frames)
    summary = [(e.type, e.before.current_zones if e.before else None, e.after.current_zones) for e in events]
    assert summary == [
        ("new", [], []),
        ("update", [], ["yard"]),
        ("update", ["yard"], []),
        ("end", [], []),
    ]
    assert events[0].before == events[0].after  # Frigate's new: before and after both present, the same
    end = events[-1]
    assert end.after.entered_zones == ["yard"] and end.after.end_ms is not None
    assert end.after.last_seen_ms == T0 + 5900 and end.after.first_seen_ms == events[0].after.first_seen_ms
    assert end.before == events[2].after
    assert len({e.after.id for e in events}) == 1


def test_an_occluded_object_sends_no_end_and_no_second_new() -> None:
    w = Walker("a", "car", (0, 0), (3, 0), hidden=frozenset(range(10, 14)))
    events = run(config(), [[w.det(f)] if f not in w.hidden else [] for f in range(30)])
    assert [e.type for e in events] == ["new", "end"]


def test_score_jitter_sends_nothing_and_a_clear_rise_one_update() -> None:
    w = Walker("a", "person", (0, 300), (0, 0))
    scores = [0.6, 0.65, 0.58, 0.62, 0.66, 0.61, 0.64] * 3 + [0.8] * 5
    events = run(config(), [[w.det(f, s)] for f, s in enumerate(scores)])
    assert [(e.type, round(e.after.top_score, 2)) for e in events] == [("new", 0.65), ("update", 0.8), ("end", 0.8)]


def test_a_label_change_is_an_update() -> None:
    box = (0.0, 300.0, 40.0, 380.0)
    # cat outweighs dog at its 4th frame
    frames = [[Detection("dog", 1, 0.8, box)]] * 3 + [[Detection("cat", 2, 0.8, box)]] * 5
    events = run(config(), frames)
    assert [(e.type, e.after.label) for e in events] == [("new", "dog"), ("update", "cat"), ("end", "cat")]


def test_stopping_and_moving_again_toggle_stationary_once_each() -> None:
    cfg = config(events=ObjectEventsConfig(stationary=StationaryConfig(frames=5, iou=0.9)))
    moving, parked = [(float(10 * f), 300.0) for f in range(5)], [(40.0, 300.0)] * 10
    path = moving + parked + [(40.0 + 10 * f, 300.0) for f in range(5)]
    frames = [[Detection("car", 0, 0.9, (x, y, x + 60, y + 40))] for x, y in path]
    events = run(cfg, frames)
    assert [(e.type, e.after.stationary) for e in events] == [
        ("new", False), ("update", True), ("update", False), ("end", False)
    ]


def test_loitering_in_a_zone_is_one_update() -> None:
    cfg = config(zones={"yard": ZoneConfig(coordinates=ZONE, inertia=1, loitering_time_s=2)},
                 events=ObjectEventsConfig(stationary=StationaryConfig(frames=1000)))
    w = Walker("a", "person", (280, 100), (0, 0))
    events = run(cfg, [[w.det(f)] for f in range(40)], fps=10)
    assert [(e.type, e.after.loitering) for e in events] == [("new", False), ("update", True), ("end", True)]
    assert events[1].after.frame_time_ms - events[0].after.frame_time_ms > 2000


def test_an_object_below_its_label_min_score_is_never_reported_until_it_reaches_it() -> None:
    cfg = config(filters={"car": ObjectFilter(min_score=0.8)})
    w = Walker("a", "car", (0, 300), (0, 0))
    events = run(cfg, [[w.det(f, 0.7)] for f in range(10)] + [[w.det(10, 0.85)]])
    assert [(e.type, e.after.frame) for e in events] == [("new", 10), ("end", 10)]
    assert run(cfg, [[w.det(f, 0.7)] for f in range(10)]) == []


def test_two_objects_get_their_own_ids_and_events() -> None:
    a = Walker("a", "person", (0, 100), (6, 0))
    b = Walker("b", "person", (300, 110), (-6, 0))
    events = run(config(zones={}), [[a.det(f), b.det(f)] for f in range(60)])
    assert sorted(e.type for e in events) == ["end", "end", "new", "new"]
    assert len({e.after.id for e in events}) == 2


def test_states_carry_the_model_version_and_snapshot_flag() -> None:
    cfg = config()
    tracker, life = ByteTracker(cfg.tracker), ObjectLifecycle(cfg, model_version=7)
    det = Detection("person", 0, 0.9, (0, 0, 10, 20))
    life.step(tracker.update([det]), 0, T0)
    new = life.step(tracker.update([det]), 1, T0 + 100, with_snapshot={1})
    assert new[0].after.model_version == 7 and new[0].after.has_snapshot


def test_one_stray_box_does_not_wake_a_stationary_object() -> None:
    cfg = config(zones={}, events=ObjectEventsConfig(stationary=StationaryConfig(frames=5, iou=0.7, move_frames=3)))
    parked, stray = (100.0, 300.0, 200.0, 360.0), (130.0, 300.0, 230.0, 360.0)  # IoU 0.54 with the spot
    still, off = [[Detection("car", 0, 0.9, parked)]], [[Detection("car", 0, 0.9, stray)]]
    frames = still * 10 + off * 2 + still * 5
    assert [(e.type, e.after.stationary) for e in run(cfg, frames)] == [("new", False), ("update", True), ("end", True)]
    moved = still * 10 + off * 3
    assert [(e.type, e.after.stationary) for e in run(cfg, moved)] == [
        ("new", False), ("update", True), ("update", False), ("end", False)
    ]
