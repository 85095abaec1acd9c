"""Run mode in telemetry: the share of frames run to completion (vs queued for the frame thread) is a declared
figure the frame loop reports, so it reaches MQTT telemetry, Prometheus and Grafana like the others."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.config import AgentConfig
from edge.frame_loop import FrameLoop
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.live_config import LiveConfig
from edge.supervise import Health
from shared.metrics import BY_NAME, check_figure
from tests.edge.fake_model import FakeModel
from tests.edge.gated_source import GatedSource
from tests.edge.test_pipeline_rtc import (
    SETTLE_S,
    Recorder,
    idle_waits,  # noqa: F401 - the fixture
    images,
    one_at_a_time,
    running,
    wait_until,
)
from tests.edge.tiny_onnx import manifest_for, write_classifier


def frame_loop(capture: object, source: GatedSource) -> FrameLoop:
    """A frame loop reporting on a capture the test drives (its own thread is not started)."""
    loop = FrameLoop(LiveConfig(AgentConfig(), None), source, ModelSlot(), FrameStats(), lambda r: None,
                     threading.Event(), Health())
    loop._capture = capture  # type: ignore[assignment]
    return loop


def test_the_share_of_frames_run_to_completion_is_reported_in_telemetry(
    tmp_path: Path, idle_waits: None  # noqa: F811
) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    manifest = manifest_for(path)
    unblock = threading.Event()

    class SlowOnce(FakeModel):
        def run(self, batch: np.ndarray) -> np.ndarray:
            if self.runs == 2:  # frame 1's inference is slow: frames 2-5 pile up behind it
                unblock.wait(SETTLE_S)
            return super().run(batch)

    model = SlowOnce(4)
    slot = ModelSlot()
    slot.install(prepare(model, manifest, manifest.variants[0]))
    rec = Recorder()
    source = GatedSource(images(9))
    with running(source, slot, rec) as (capture, _):
        loop = frame_loop(capture, source)
        assert "inline_share" not in loop.metrics(), "no frame yet: no share to report"
        one_at_a_time(source, capture, rec, range(2))
        wait_until(lambda: model.runs == 2, "frame 1 in inference")
        source.release(4)
        unblock.set()
        one_at_a_time(source, capture, rec, range(6, 9))
    figures = loop.metrics()
    assert figures["inline_share"] == pytest.approx(5 / 9)  # 5 run to completion, 4 queued (the backlog)
    assert check_figure("inline_share", figures["inline_share"]) == pytest.approx(5 / 9)
    metric = BY_NAME["inline_share"]
    assert metric.prometheus_name == "edgeferry_inline_share" and metric.bounds == (0.0, 1.0)
