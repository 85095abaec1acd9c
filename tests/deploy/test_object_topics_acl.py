"""Under the shipped broker ACL a device may publish its own object events and snapshots, and no other device's."""

from __future__ import annotations

from collections.abc import Callable

from shared.object_events import ObjectTopics
from shared.topics import DeviceTopics
from tests.deploy.prod_broker import ACCEPTED_BELOW, NOT_AUTHORIZED, Account


def test_a_device_publishes_its_own_object_events_and_snapshots_only(login: Callable[..., Account]) -> None:
    dash = login("edgeferry-dashboard").subscribe("edgeferry/#")
    cam = login("lab.cam-1")
    own, other = ObjectTopics(DeviceTopics("lab", "cam-1")), ObjectTopics(DeviceTopics("lab", "cam-2"))
    refused = [other.events, other.snapshot("1700-1"), f"{DeviceTopics('lab', 'cam-1').base}/objects/other"]
    assert {t: cam.publish(t) for t in refused} == dict.fromkeys(refused, NOT_AUTHORIZED)
    allowed = [own.events, own.snapshot("1700000000000-1")]
    assert [t for t in allowed if cam.publish(t) >= ACCEPTED_BELOW] == []
    dash.wait_topic(allowed[-1])
    assert [t for t in dash.topics() if t in refused] == []
    assert [t for t in dash.topics() if t in allowed] == allowed
