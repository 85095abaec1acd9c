"""The simulated detector (no sockets): each object gets one id with `new` first and `end` last, updates when its
zones or stationary state change, zone counts that match the objects in each zone, a snapshot whose crop holds its
box, and messages the wire contract accepts; some cars park in the driveway long enough for a zone alert."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from fleet.sim.detector import DetectorSim, zones_of
from fleet.sim.runner import SimOptions, Simulation
from shared.object_events import ObjectEventPayload, ObjectTopics, SnapshotPayload
from shared.payloads import TelemetryPayload

NOW = 1_700_000_000_000


def run(seconds: int, seed: str = "s") -> list[tuple[int, dict[str, float], dict[str, int], list[Any]]]:
    sim = DetectorSim(seed)
    return [(NOW + t * 1000, *sim.tick(1.0, NOW + t * 1000)) for t in range(seconds)]


def test_each_object_has_one_id_new_first_end_last_and_updates_on_zone_or_stationary_changes() -> None:
    lives: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, _, _, messages in run(600):
        for kind, body in messages:
            if kind == "event":
                lives[body["after"]["id"]].append(body)
    ended = {oid: evs for oid, evs in lives.items() if evs[-1]["type"] == "end"}
    assert len(ended) >= 50
    for evs in ended.values():
        types = [e["type"] for e in evs]
        assert types[0] == "new" and types[-1] == "end" and set(types[1:-1]) <= {"update"}
        assert len({e["after"]["label"] for e in evs}) == 1
        for e in evs[1:-1]:
            b, a = e["before"], e["after"]
            assert (b["current_zones"], b["stationary"]) != (a["current_zones"], a["stationary"])
            assert a["current_zones"] == list(zones_of(tuple(a["box"])))
    parked = [evs for evs in ended.values() if any(e["after"]["stationary"] and e["after"]["current_zones"] ==
                                                   ["driveway"] for e in evs)]
    assert parked and all(evs[0]["after"]["label"] == "car" for evs in parked)
    stays = [(evs[-1]["after"]["last_seen_ms"] - next(e["after"]["frame_time_ms"] for e in evs if
              "driveway" in e["after"]["current_zones"])) / 1000 for evs in parked]
    assert max(stays) > 20  # long enough for a "car in the driveway for 20 s" rule


def test_zone_counts_match_the_objects_standing_in_each_zone() -> None:
    inside: dict[str, tuple[str, tuple[str, ...]]] = {}
    for _, figures, counts, messages in run(300, "zones"):
        for kind, body in messages:
            if kind == "event":
                a = body["after"]
                if body["type"] == "end":
                    inside.pop(a["id"], None)
                else:
                    inside[a["id"]] = (a["label"], tuple(a["current_zones"]))
        for zone in ("driveway", "door"):
            assert counts[zone] == sum(zone in zs for _, zs in inside.values())
            for label in ("person", "car"):
                assert counts.get(f"{zone}/{label}", 0) == sum(zone in zs and lb == label
                                                                for lb, zs in inside.values())
        assert figures["det_objects_per_frame"] == len(inside)


def test_every_new_object_has_a_snapshot_whose_crop_holds_its_box() -> None:
    news, snaps = set(), {}
    for _, _, _, messages in run(200, "snaps"):
        for kind, body in messages:
            if kind == "event" and body["type"] == "new":
                news.add(body["after"]["id"])
            elif kind == "snapshot":
                snaps[body["object_id"]] = body
    assert news and news == set(snaps)
    for s in snaps.values():
        (x1, y1, x2, y2), (c1, d1, c2, d2) = s["box"], s["crop"]
        assert c1 <= x1 < x2 <= c2 and d1 <= y1 < y2 <= d2


def test_a_simulated_detectors_messages_pass_the_wire_contract() -> None:
    device = Simulation(SimOptions(devices=3, detectors=1, rate_hz=1.0)).devices[0]
    assert device.detector is not None
    device.detector.spawn_per_s = 1.0
    topics = ObjectTopics(device.topics)
    reports = [json.loads(device.telemetry_payload(NOW + i * 1000, float(i))) for i in range(30)]
    for r in reports:
        TelemetryPayload.model_validate(r)
        assert set(r["zone_counts"]) >= {"driveway", "door"} and "det_objects_per_frame" in r
    messages = device.take_alerts()
    events = [ObjectEventPayload.model_validate_json(p) for t, p in messages if t == topics.events]
    snaps = [SnapshotPayload.model_validate_json(p) for t, p in messages if t != topics.events]
    assert events and snaps and all(t == topics.snapshot(s.object_id) for (t, _), s in
                                    zip([m for m in messages if m[0] != topics.events], snaps, strict=True))
    seqs = [r["seq"] for r in reports] + [e.seq for e in events]
    assert len(set(seqs)) == len(seqs)  # one sequence across telemetry and object messages, as an agent's
