"""DetectionService: frame times from capture stamps, a config or model change ends objects, figures per window."""

from __future__ import annotations

from pathlib import Path

from edge.detection.config import DetectionConfig, SnapshotConfig, TrackerConfig, ZoneConfig
from edge.detection.service import DetectionService
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload
from shared.tasks.detection import Detection
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink

ZONE = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
CAR = Detection("car", 2, 0.9, (10.0, 10.0, 50.0, 40.0))


def service(link: FakeLink, cfg: DetectionConfig | None = None) -> DetectionService:
    cfg = cfg or DetectionConfig(zones={"lot": ZoneConfig(coordinates=ZONE, inertia=1)},
                                 tracker=TrackerConfig(min_hits=1))
    return DetectionService(cfg, link, DeviceTopics("lab", "cam-1"), EnvelopeFactory("cam-1"), model_version=1,
                            wall=lambda: 1000.0, perf=lambda: 50.0)


def events(link: FakeLink) -> list[tuple[str, int | None]]:
    out = []
    for m in link.published:
        if m.topic.endswith("/objects/events"):
            e = ObjectEventPayload.model_validate_json(m.payload)
            out.append((e.type, e.after.model_version))
    return out


def test_frame_time_is_the_wall_time_of_the_capture_stamp() -> None:
    s = service(FakeLink())
    assert s.frame_time_ms(49.75) == 999_750  # captured 0.25 s before now on the perf clock
    (new,) = s.on_frame([CAR], 0, 49.75)
    assert new.after.first_seen_ms == 999_750


def test_a_new_model_ends_every_object_and_tracks_afresh() -> None:
    link = FakeLink()
    s = service(link)
    s.on_frame([CAR], 0, 50.0)
    assert s.zone_counts() == {"lot": 1, "lot/car": 1}
    s.new_model(2)
    assert s.zone_counts() == {"lot": 0}
    s.on_frame([CAR], 1, 50.0)
    assert events(link) == [("new", 1), ("end", 1), ("new", 2)]


def test_changed_settings_end_objects_and_unchanged_settings_do_nothing(tmp_path: Path) -> None:
    link = FakeLink()
    s = service(link)
    s.on_frame([CAR], 0, 50.0)
    assert s.reconfigure(s.cfg.model_copy()) == []
    cfg = s.cfg.model_copy(update={"zones": {}, "snapshots": SnapshotConfig(enabled=True, dir=tmp_path / "s")})
    assert [e.type for e in s.reconfigure(cfg)] == ["end"]
    assert s.zone_counts() == {} and (tmp_path / "s").is_dir()


def test_quality_figures_count_every_reported_box_even_filtered_ones() -> None:
    cfg = DetectionConfig(objects=["car"], tracker=TrackerConfig(min_hits=1))
    s = service(FakeLink(), cfg)
    s.on_frame([CAR, Detection("dog", 1, 0.5, (0.0, 0.0, 5.0, 5.0))], 0, 50.0)
    s.on_frame([], 1, 50.0)
    assert s.metrics() == {"det_frames_window": 2.0, "det_objects_per_frame": 1.0, "det_score_mean": 0.7}
    assert s.class_counts() == {"car": 1, "dog": 1}


def test_finish_ends_what_is_followed() -> None:
    link = FakeLink()
    s = service(link)
    s.on_frame([CAR], 0, 50.0)
    assert [e.type for e in s.finish()] == ["end"] and s.finish() == []
