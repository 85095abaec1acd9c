"""Object and alert ids stay unique per device across streams: each named stream's ids carry its own number."""

from __future__ import annotations

from edge.stream_ids import StreamIds


def test_each_named_stream_keeps_its_own_number_and_the_single_source_none() -> None:
    ids = StreamIds()
    assert ids.prefix("default") == ""  # the single source's ids are as they always were
    assert [ids.prefix("gate"), ids.prefix("yard"), ids.prefix("gate")] == ["s1.", "s2.", "s1."]
    assert StreamIds().prefix("yard") == "s0."  # numbered in order of appearance, per service
