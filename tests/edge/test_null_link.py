"""With MQTT disabled the agent publishes into a link that keeps nothing, so memory stays flat."""

from __future__ import annotations

from edge.link import Link, NullLink


def test_null_link_discards_and_counts() -> None:
    link: Link = NullLink()
    for i in range(1000):
        link.publish_json("edgeferry/f/d/telemetry", {"seq": i})
    link.publish_text("edgeferry/f/d/status", "online", retain=True)
    assert isinstance(link, NullLink) and link.discarded == 1001
    assert not link.connected and not vars(link).keys() - {"discarded"}
