"""Zones test where an object stands (bottom-centre, edges and vertices inside), filters, masks and loitering."""

from __future__ import annotations

import pytest

from edge.detection.config import DetectionConfig, ObjectFilter, ZoneConfig
from edge.detection.filters import ObjectFilters
from edge.detection.geometry import bottom_centre, point_in_polygon
from edge.detection.zones import ZoneTracker
from shared.tasks.detection import Detection

SQUARE = [(100.0, 100.0), (200.0, 100.0), (200.0, 200.0), (100.0, 200.0)]
TRIANGLE = [(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)]


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((150, 150), True),
        ((100, 100), True),  # vertex
        ((200, 200), True),  # vertex
        ((150, 100), True),  # edge
        ((200, 150), True),  # edge
        ((99.999, 150), False),
        ((150, 200.001), False),
        ((50, 50), True),  # on the triangle's hypotenuse
        ((50.001, 50), False),
    ],
)
def test_points_on_edges_and_vertices_are_inside(point: tuple[float, float], inside: bool) -> None:
    polygon = TRIANGLE if point[0] < 60 and point[1] < 60 else SQUARE
    assert point_in_polygon(point, polygon) is inside


def test_a_concave_polygon_excludes_its_notch() -> None:
    u_shape = [(0, 0), (30, 0), (30, 30), (20, 30), (20, 10), (10, 10), (10, 30), (0, 30)]
    assert point_in_polygon((5, 20), u_shape) and point_in_polygon((25, 20), u_shape)
    assert not point_in_polygon((15, 20), u_shape)


def test_zone_membership_is_decided_by_the_bottom_centre_not_the_box() -> None:
    zones = ZoneTracker({"door": ZoneConfig(coordinates=SQUARE, inertia=1)})
    # Box overlaps the zone heavily, but the feet are below it.
    assert zones.observe(1, "person", 0.9, (110, 120, 190, 230), 0.0).current == ()
    # Small box whose bottom-centre lies exactly on the zone's bottom edge.
    assert bottom_centre((140, 150, 160, 200)) == (150, 200)
    assert zones.observe(2, "person", 0.9, (140, 150, 160, 200), 0.0).current == ("door",)


def test_entry_and_exit_need_inertia_frames() -> None:
    zones = ZoneTracker({"door": ZoneConfig(coordinates=SQUARE, inertia=3)})
    inside, outside = (140, 100, 160, 150), (140, 300, 160, 350)
    pattern = [inside, inside, outside, inside, inside, inside, outside, outside, inside, outside, outside, outside]
    got = [bool(zones.observe(1, "person", 0.9, box, float(i)).current) for i, box in enumerate(pattern)]
    assert got == [False, False, False, False, False, True, True, True, True, True, True, False]


def test_zone_label_score_and_area_filters() -> None:
    zone = ZoneConfig(coordinates=SQUARE, inertia=1, objects=["car"], min_score=0.6, min_area=100, max_area=5000)
    zones = ZoneTracker({"lot": zone})
    box = (140.0, 100.0, 160.0, 150.0)  # area 1000
    assert zones.observe(1, "person", 0.9, box, 0).current == ()
    assert zones.observe(2, "car", 0.5, box, 0).current == ()
    assert zones.observe(3, "car", 0.9, (149, 145, 151, 150), 0).current == ()  # area 10
    assert zones.observe(4, "car", 0.9, (100, 100, 200, 150), 0).current == ("lot",)  # area 5000: edge of range
    assert zones.observe(5, "car", 0.9, (100, 50, 200, 150), 0).current == ()  # area 10000
    assert zones.observe(6, "car", 0.6, box, 0).current == ("lot",)


def test_loitering_starts_after_the_zone_time_counted_from_entry() -> None:
    zones = ZoneTracker({"lot": ZoneConfig(coordinates=SQUARE, inertia=2, loitering_time_s=10)})
    box = (140.0, 100.0, 160.0, 150.0)
    clock = [100.0, 101.0, 105.0, 110.0, 110.5, 111.0]
    got = [zones.observe(7, "car", 0.9, box, t) for t in clock]
    assert [s.current for s in got] == [(), ("lot",), ("lot",), ("lot",), ("lot",), ("lot",)]
    # Inside since 100.0 (the first of the inertia frames): loitering once more than 10 s have passed.
    assert [s.loitering for s in got] == [(), (), (), (), ("lot",), ("lot",)]


def test_leaving_resets_the_loitering_clock() -> None:
    zones = ZoneTracker({"lot": ZoneConfig(coordinates=SQUARE, inertia=1, loitering_time_s=5)})
    inside, outside = (140.0, 100.0, 160.0, 150.0), (140.0, 300.0, 160.0, 350.0)
    assert zones.observe(1, "car", 0.9, inside, 0).loitering == ()
    assert zones.observe(1, "car", 0.9, inside, 6).loitering == ("lot",)
    assert zones.observe(1, "car", 0.9, outside, 7).current == ()
    assert zones.observe(1, "car", 0.9, inside, 8).loitering == ()
    assert zones.observe(1, "car", 0.9, inside, 13.5).loitering == ("lot",)


def test_masks_and_label_filters_drop_detections_before_tracking() -> None:
    cfg = DetectionConfig(
        objects=["person", "car"],
        masks=[[(0, 0), (50, 0), (50, 50), (0, 50)]],
        filters={"car": ObjectFilter(min_area=400, max_area=10_000, mask=[SQUARE])},
    )
    f = ObjectFilters(cfg)
    keep = [
        Detection("person", 0, 0.9, (60, 60, 80, 100)),
        Detection("car", 1, 0.9, (0, 160, 40, 210)),  # feet at (20, 210): below the car mask
        Detection("person", 0, 0.9, (140, 100, 160, 150)),  # in the car mask, but it is a person
    ]
    drop = [
        Detection("dog", 2, 0.9, (60, 60, 80, 100)),  # untracked label
        Detection("person", 0, 0.9, (10, 10, 30, 50)),  # feet (20, 50) on the global mask's edge
        Detection("car", 1, 0.9, (140, 100, 160, 150)),  # feet in the car mask
        Detection("car", 1, 0.9, (0, 300, 10, 310)),  # area 100 < 400
        Detection("car", 1, 0.9, (0, 300, 200, 400)),  # area 20000 > 10000
    ]
    assert f.apply(keep + drop) == keep


def test_per_label_min_score_decides_when_an_object_is_reported() -> None:
    f = ObjectFilters(DetectionConfig(filters={"car": ObjectFilter(min_score=0.8)}))
    assert not f.reportable("car", 0.79) and f.reportable("car", 0.8)
    assert f.reportable("person", 0.5) and not f.reportable("person", 0.49)  # default_filter


def test_malformed_detections_never_reach_the_tracker() -> None:
    f = ObjectFilters(DetectionConfig())
    bad = [
        Detection("person", 0, float("nan"), (0, 0, 10, 10)),
        Detection("person", 0, 0.9, (0, 0, float("inf"), 10)),
        Detection("person", 0, 0.9, (0, float("nan"), 10, 10)),
        Detection("person", 0, 0.9, (0, 0, 1e9, 10)),
        Detection("person", 0, 0.9, (10, 0, 0, 10)),  # x2 < x1
    ]
    good = Detection("person", 0, 0.9, (0, 0, 10, 10))
    assert f.apply([*bad, good]) == [good]
