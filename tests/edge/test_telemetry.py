"""Envelopes (one seq per boot, thread-safe) and telemetry reports from declared metrics only."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import pytest

from edge.link.lanes import LaneBudget
from edge.percentiles import StageWindows
from edge.quality import QualityWindow
from edge.supervise import Health
from edge.telemetry import TELEMETRY, EnvelopeFactory, Telemetry, TelemetryLoop
from shared.metrics import BY_NAME
from shared.payloads import Envelope, ReplyPayload
from tests.edge.fake_link import FakeLink


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_envelopes_carry_identity_and_a_ms_timestamp() -> None:
    f = EnvelopeFactory("cam-1", clock=Clock(1_700_000_000.1234))
    env = f.next()
    assert (env.device_id, env.boot_id, env.seq, env.ts, env.replayed) == ("cam-1", f.boot_id, 0, 1_700_000_000_123,
                                                                           False)
    assert env.schema_version == 1
    assert f.next().seq == 1
    assert EnvelopeFactory("cam-1").boot_id != f.boot_id  # a new run is a new boot


def test_seq_is_unique_and_gapless_across_threads() -> None:
    f = EnvelopeFactory("cam-1")
    seqs: list[list[int]] = [[] for _ in range(4)]

    def take(i: int) -> None:
        for _ in range(500):
            seqs[i].append(f.next().seq)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for part in seqs for s in part) == list(range(2000))
    assert all(part == sorted(part) for part in seqs)


def test_stamp_builds_any_enveloped_payload() -> None:
    f = EnvelopeFactory("cam-1")
    f.next()
    reply = f.stamp(ReplyPayload, id="r", command="ping", ok=True)
    assert isinstance(reply, ReplyPayload) and isinstance(reply, Envelope)
    assert (reply.seq, reply.id, reply.device_id) == (1, "r", "cam-1")


def test_values_merge_counters_gauges_and_sources_and_leave_out_unknowns(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(50.0)
    stages = StageWindows()
    for ms in (4.0, 5.0, 6.0):
        stages.record("infer", ms)
    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[stages.values], clock=clock)
    tel.add_source(lambda: {"fps": 29.5, "frames": 1200, "temp_c": math.nan, "bogus_metric": 1.0})
    tel.count("cmd_errors")
    tel.count("cmd_errors", 2)
    tel.set("model_version", 4)
    clock.t = 80.0
    with caplog.at_level(logging.WARNING):
        values = tel.values()
    assert values == {
        "infer_ms_p50": 5.0, "infer_ms_p95": 6.0, "infer_ms_p99": 6.0,
        "fps": 29.5, "frames": 1200.0, "cmd_errors": 3.0, "model_version": 4.0, "uptime_s": 30.0,
    }
    assert "bogus_metric" in caplog.text
    assert all(k in BY_NAME for k in values)


def test_a_failing_source_does_not_stop_the_report(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, float]:
        raise OSError("sensor gone")

    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[broken, lambda: {"fps": 1.0}])
    with caplog.at_level(logging.ERROR):
        values = tel.values()
    assert values["fps"] == 1.0
    assert "sensor gone" in caplog.text


def test_only_declared_names_and_kinds_can_be_recorded() -> None:
    tel = Telemetry(EnvelopeFactory("cam-1"))
    with pytest.raises(ValueError, match="not a counter"):
        tel.count("fps")
    with pytest.raises(ValueError, match="not declared"):
        tel.set("made_up", 1.0)


def test_build_gives_a_flat_enveloped_payload() -> None:
    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 12.0, "queue_depth": 2}])
    body = tel.build().model_dump()
    assert body["fps"] == 12.0 and body["queue_depth"] == 2.0 and body["seq"] == 0
    flat = {k: v for k, v in body.items() if k not in ("class_counts", "zone_counts", "streams")}
    assert all(isinstance(v, int | float | str | bool) for v in flat.values())
    assert body["class_counts"] is None and body["zone_counts"] is None  # no counters attached: no counts
    assert body["streams"] is None  # one stream: its figures are the flat ones


def test_class_counts_come_from_the_window_the_figures_closed() -> None:
    window = QualityWindow()
    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[window.metrics])
    tel.set_class_counts(window.class_counts)
    for label, score in (("cat", 0.9), ("cat", 0.7), ("dog", 0.2)):
        window.add(label, score)
    first = tel.build().model_dump()
    assert first["class_counts"] == {"cat": 2, "dog": 1} and first["results_window"] == 3
    assert first["conf_mean"] == pytest.approx(0.6) and first["low_conf_share"] == pytest.approx(1 / 3)
    window.add("dog", 0.8)
    second = tel.build().model_dump()
    assert second["class_counts"] == {"dog": 1} and second["results_window"] == 1
    empty = tel.build().model_dump()
    assert empty["results_window"] == 0 and empty["class_counts"] == {}
    assert "conf_mean" not in empty and "low_conf_share" not in empty  # unknown is omitted, never NaN


def test_loop_publishes_reports_and_feeds_sinks() -> None:
    link = FakeLink()
    seen: list[dict[str, float]] = []
    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[lambda: {"fps": 3.0}])
    topic = "edgeferry/lab/cam-1/telemetry"
    loop = TelemetryLoop(tel, link, topic, interval_s=0.01, sinks=[lambda v: seen.append(dict(v))])
    loop.start()
    deadline = time.monotonic() + 10
    while len(link.published) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    sent = [p.json() for p in link.on("edgeferry/lab/cam-1/telemetry")]
    assert len(sent) >= 4  # at least three periodic reports and the final one
    assert [b["seq"] for b in sent] == list(range(len(sent)))
    assert all(b["fps"] == 3.0 for b in sent)
    assert len(seen) == len(sent)


class BrokenOnceLink(FakeLink):
    """A link whose first publish fails with an error nobody planned for."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def publish_json(self, topic: str, payload: Any, retain: bool = False, *, budget: LaneBudget | None = None
                     ) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("unexpected (injected)")
        super().publish_json(topic, payload, retain)


def test_the_loop_survives_a_failed_report_counts_it_and_keeps_reporting() -> None:
    link = BrokenOnceLink()
    health = Health()
    tel = Telemetry(EnvelopeFactory("cam-1"), sources=[health.metrics])
    loop = TelemetryLoop(tel, link, "t/telemetry", interval_s=0.01, health=health)
    loop.start()
    deadline = time.monotonic() + 10
    while len(link.published) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(link.published) >= 2, "reporting stopped after one failure"
    assert health.errors(TELEMETRY) == 1 and health.degraded() == {}
    assert link.on("t/telemetry")[-1].json()["thread_errors"] == 1
    loop.stop()


def test_one_out_of_range_figure_is_dropped_not_the_whole_report(caplog: pytest.LogCaptureFixture) -> None:
    t = Telemetry(EnvelopeFactory("cam-1"), clock=Clock())
    # A buggy source: a share above 1 and a fractional counter, beside figures that are fine.
    t.add_source(lambda: {"conf_mean": 1.5, "frames": 12.5, "fps": 30.0})
    with caplog.at_level(logging.WARNING, logger="edge.telemetry"):
        first = t.build()
        second = t.build()
    figures = first.figures()
    assert figures["fps"] == 30.0
    assert "conf_mean" not in figures and "frames" not in figures
    assert figures["telemetry_figures_dropped"] == 2.0
    assert second.figures()["telemetry_figures_dropped"] == 4.0
    # Logged once per figure, not once per report.
    assert sum("conf_mean" in r.getMessage() for r in caplog.records) == 1
    assert sum("frames" in r.getMessage() for r in caplog.records) == 1


def test_report_once_publishes_despite_a_bad_figure() -> None:
    link = FakeLink()
    t = Telemetry(EnvelopeFactory("cam-1"), clock=Clock())
    t.add_source(lambda: {"low_conf_share": -0.5, "fps": 5.0})
    payload = TelemetryLoop(t, link, "t", 60.0).report_once()
    assert payload.figures()["fps"] == 5.0 and "low_conf_share" not in payload.figures()


def test_zone_counts_ride_beside_the_figures_bounded() -> None:
    t = Telemetry(EnvelopeFactory("cam-1"), clock=Clock())
    t.set_zone_counts(lambda: {"driveway": 2, "driveway/car": 1, "driveway/person": 1, "lawn": 0})
    assert t.build().zone_counts == {"driveway": 2, "driveway/car": 1, "driveway/person": 1, "lawn": 0}
    many = {f"z{i:04d}/label": 1 for i in range(2000)} | {"door": 3}
    t.set_zone_counts(lambda: many)
    zones = t.build().zone_counts
    assert zones is not None and len(zones) == 1024 and zones["door"] == 3
