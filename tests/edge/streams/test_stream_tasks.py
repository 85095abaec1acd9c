"""A detector's tracking and an anomaly model's alert rule run per stream: two cameras seeing the same thing at the
same moment give two objects with their own ids and stream names, a camera's zones are its own, and a removed
stream ends its objects and its open alert without touching the others'."""

from __future__ import annotations

from edge.detection.config import DetectionConfig, TrackerConfig, ZoneConfig
from edge.detection.service import DetectionService
from edge.sensor.config import SensorConfig
from edge.sensor.service import AnomalyService
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload
from shared.sensor_events import AnomalyAlertPayload
from shared.streams import split_zone_key
from shared.tasks.anomaly import AnomalyScore
from shared.tasks.detection import Detection
from shared.topics import DeviceTopics
from tests.edge.fake_link import FakeLink
from tests.edge.sensor.anomaly_package import THRESHOLD, anomaly_manifest

TOPICS = DeviceTopics("lab", "box-1")
LEFT = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
RIGHT = [(200.0, 0.0), (300.0, 0.0), (300.0, 100.0), (200.0, 100.0)]
CAR = Detection("car", 2, 0.9, (10.0, 10.0, 50.0, 40.0))


def detection(link: FakeLink, cfg: DetectionConfig | None = None, *, single_source: bool = False) -> DetectionService:
    """The service of an agent serving `streams:` (single_source=False) or one `source:`."""
    cfg = cfg or DetectionConfig(tracker=TrackerConfig(min_hits=1))
    return DetectionService(cfg, link, TOPICS, EnvelopeFactory("box-1"), model_version=1,
                            wall=lambda: 1000.0, perf=lambda: 50.0, single_source=single_source)


def object_events(link: FakeLink) -> list[ObjectEventPayload]:
    return [ObjectEventPayload.model_validate_json(m.payload) for m in link.published
            if m.topic.endswith("/objects/events")]


def test_two_cameras_seeing_the_same_car_at_the_same_moment_report_two_objects_with_their_own_ids() -> None:
    link = FakeLink()
    svc = detection(link)
    svc.on_frame([CAR], 0, 50.0, stream="gate")
    svc.on_frame([CAR], 0, 50.0, stream="yard")
    svc.on_frame([CAR], 1, 50.0, stream="gate")
    events = object_events(link)
    assert [(e.type, e.stream) for e in events] == [("new", "gate"), ("new", "yard")]
    assert events[0].after.id != events[1].after.id
    # One camera's car does not keep the other's alive: yard alone ends its object.
    assert [(e.type, e.stream, e.after.id) for e in svc.drop_stream("yard")] == [("end", "yard", events[1].after.id)]
    assert svc.drop_stream("yard") == []
    assert {e.stream for e in object_events(link) if e.type == "end"} == {"yard"}
    # The single source's stream keeps its old ids: '<first seen ms>-<track id>'.
    svc.on_frame([CAR], 2, 50.0)
    assert object_events(link)[-1].stream == "default" and object_events(link)[-1].after.id == "1000000-1"


def test_each_camera_counts_its_own_zones() -> None:
    link = FakeLink()
    svc = detection(link)
    svc.set_streams({"gate": DetectionConfig(tracker=TrackerConfig(min_hits=1),
                                             zones={"drive": ZoneConfig(coordinates=LEFT, inertia=1)}),
                     "yard": DetectionConfig(tracker=TrackerConfig(min_hits=1),
                                             zones={"lawn": ZoneConfig(coordinates=RIGHT, inertia=1)})})
    svc.on_frame([CAR], 0, 50.0, stream="gate")
    svc.on_frame([CAR], 0, 50.0, stream="yard")
    by_stream = {e.stream: e.after.current_zones for e in object_events(link)}
    assert by_stream == {"gate": ["drive"], "yard": []}
    assert svc.zone_counts() == {"gate:drive": 1, "gate:drive/car": 1, "yard:lawn": 0}


def test_two_cameras_with_a_zone_of_the_same_name_each_report_their_own_count() -> None:
    link = FakeLink()
    door = DetectionConfig(tracker=TrackerConfig(min_hits=1), zones={"door": ZoneConfig(coordinates=LEFT, inertia=1)})
    svc = detection(link, door)
    svc.on_frame([CAR], 0, 50.0, stream="front")  # a car at the front door
    svc.on_frame([], 0, 50.0, stream="back")  # nobody at the back door
    counts = svc.zone_counts()
    # One figure per camera, the camera's name in the key; not one 'door' summing both cameras.
    assert counts["front:door"] == 1 and counts["front:door/car"] == 1
    assert counts["back:door"] == 0
    assert "door" not in counts  # no frame ever came without a stream name: no unnamed 'door' stuck at 0
    assert split_zone_key("front:door/car") == ("front", "door/car")
    assert split_zone_key("door/car") == ("default", "door/car")


def test_an_agent_serving_streams_reports_no_zones_of_a_single_source_it_does_not_have() -> None:
    door = DetectionConfig(tracker=TrackerConfig(min_hits=1), zones={"door": ZoneConfig(coordinates=LEFT, inertia=1)})
    svc = detection(FakeLink(), door)
    assert svc.zone_counts() == {} and svc.streams == []  # no camera fed a frame yet: no figure stuck at 0
    svc.on_frame([], 0, 50.0, stream="front")
    assert svc.zone_counts() == {"front:door": 0}
    svc.reconfigure(door.model_copy(update={"zones": {"door": ZoneConfig(coordinates=RIGHT, inertia=1)}}))
    assert svc.zone_counts() == {}  # tracking restarted: the cameras' lanes come back with their frames
    svc.on_frame([], 1, 50.0, stream="front")
    svc.new_model(2)
    assert svc.zone_counts() == {}
    # One `source:`: its lane is kept ready, so its zones are reported (at 0) before the first frame.
    assert detection(FakeLink(), door, single_source=True).zone_counts() == {"door": 0}


def test_changing_one_cameras_zones_restarts_only_its_tracking() -> None:
    link = FakeLink()
    base = DetectionConfig(tracker=TrackerConfig(min_hits=1))
    svc = detection(link, base)
    svc.on_frame([CAR], 0, 50.0, stream="gate")
    svc.on_frame([CAR], 0, 50.0, stream="yard")
    ended = svc.set_streams({"gate": base.model_copy(update={"zones": {"drive": ZoneConfig(coordinates=LEFT)}})})
    assert [(e.type, e.stream) for e in ended] == [("end", "gate")]


def test_a_stream_being_removed_keeps_its_objects_until_it_is_dropped() -> None:
    link = FakeLink()
    base = DetectionConfig(tracker=TrackerConfig(min_hits=1))
    svc = detection(link)
    svc.set_streams({"gate": base.model_copy(update={"zones": {"drive": ZoneConfig(coordinates=LEFT)}})})
    svc.on_frame([CAR], 0, 50.0, stream="gate")
    # gate leaves the config: its last frames may still come, so its object ends only when it is dropped.
    assert svc.set_streams({}, names=["yard"]) == []
    svc.on_frame([CAR], 1, 50.0, stream="gate")
    assert [(e.type, e.stream) for e in svc.drop_stream("gate")] == [("end", "gate")]
    assert [e.type for e in object_events(link)] == ["new", "end"]


def score(value: float) -> AnomalyScore:
    return AnomalyScore(value, THRESHOLD, value > THRESHOLD, (1, 0, 2), (value, value / 2, value / 4))


def alerts(link: FakeLink) -> list[AnomalyAlertPayload]:
    return [AnomalyAlertPayload.model_validate(m.json()) for m in link.on("edgeferry/lab/box-1/sensor/alerts")]


def test_one_noisy_sensor_fires_its_own_alert_and_a_quiet_one_neither_fires_nor_clears_it() -> None:
    link = FakeLink()
    svc = AnomalyService(SensorConfig(), link, TOPICS, EnvelopeFactory("box-1"))
    manifest = anomaly_manifest()
    svc.configure(manifest, manifest.variants[0], "sensor_mqtt:one")
    for i in range(6):
        svc.on_window(score(10.0), i, "press")  # over the threshold every window
        svc.on_window(score(0.1), i, "pump")  # quiet: as one stream, these would clear press's alert
    (new,) = alerts(link)
    assert (new.type, new.stream) == ("new", "press")
    assert svc.metrics()["anomaly_alerts_active"] == 1
    svc.on_window(score(10.0), 0, "other")
    svc.on_window(score(10.0), 1, "other")
    svc.on_window(score(10.0), 2, "other")
    assert len({a.alert_id for a in alerts(link)}) == len(alerts(link)) == 2, "alert ids are unique per device"
    assert svc.metrics()["anomaly_alerts_active"] == 2
    svc.drop_stream("press")
    assert [(a.type, a.stream, a.alert_id) for a in alerts(link)[2:]] == [("end", "press", new.alert_id)]
    assert svc.streams == ["pump", "other"]
