"""One agent serving four streams on a real broker: results and events per stream, per-stream telemetry, and a
camera unplugged and plugged back in while the other streams keep producing."""

from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.sources.synthetic import draw
from shared.object_store import LocalStore
from shared.streams import STREAM_BY_NAME
from tests.edge.media import write_video
from tests.edge.package_factory import make_package, new_keypair
from tests.edge.streams.models import SwitchableSource
from tests.fixtures.broker import Broker, MqttProbe
from tests.fixtures.ports import free_port
from tests.integration.agent_harness import agent_config, running_agent, topics_of, wait_until, write_public_key

NAMES = ("gate", "yard", "shelf", "clip")


def four_streams(tmp_path: Path) -> list[dict[str, Any]]:
    images = tmp_path / "shelf"
    images.mkdir()
    for i in range(5):
        cv2.imwrite(str(images / f"{i:02d}.png"), draw("bars", i, 24, 24))
    return [
        {"name": "gate", "source": {"type": "synthetic", "width": 32, "height": 32, "fps": 20}},
        {"name": "yard", "source": {"type": "synthetic", "width": 32, "height": 32, "fps": 20, "pattern": "noise",
                                    "reconnect_backoff_s": 0.05}},
        {"name": "shelf", "source": {"type": "image_dir", "path": str(images), "loop": True}, "max_fps": 20},
        {"name": "clip", "source": {"type": "video_file", "path": str(write_video(tmp_path / "c.avi", 20)),
                                    "loop": True}, "max_fps": 20},
    ]


def config(tmp_path: Path, broker: Broker, **over: Any) -> dict[str, Any]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys)
    tree = agent_config(tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker, {},
                        **{"events.mode": "every", "streams": four_streams(tmp_path), "batching.wait_ms": 5, **over})
    del tree["source"]
    return tree


def stream_counts(probe: MqttProbe, topic: str) -> Counter[str]:
    return Counter(m.json()["stream"] for m in probe.on(topic))


def test_four_streams_publish_their_own_results_events_and_figures(tmp_path: Path, mosquitto: Broker) -> None:
    port = free_port()
    tree = config(tmp_path, mosquitto, **{"daemon.prometheus_port": port})
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    with running_agent(tree) as agent:
        wait_until(lambda: all(stream_counts(probe, topics.events)[n] >= 10 for n in NAMES), 60, "events per stream")
        report = probe.wait_for(
            lambda m: m.topic == topics.telemetry and set(m.json().get("streams") or {}) == set(NAMES)
            and all(f.get("frames", 0) > 0 for f in m.json()["streams"].values()), 30, "per-stream telemetry")
        assert agent.frames.runner.batched_frames > 0, "frames of different streams were batched"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            scrape = resp.read().decode()
    for name in NAMES:
        assert f'stream="{name}"' in scrape and "edgeferry_stream_processed_fps{" in scrape
    streams = report.json()["streams"]
    for name, figures in streams.items():
        assert set(figures) <= set(STREAM_BY_NAME), name
        assert figures["connected"] == 1 and figures["source_errors"] == 0
        assert figures["e2e_ms_p99"] >= figures["e2e_ms_p50"] > 0
    events = probe.on(topics.events)
    # Each stream's events count its own frames: per stream, frame numbers rise one by one from 0 (fifo off:
    # a 'latest' ring may skip, so rising is what holds).
    for name in NAMES:
        frames = [m.json()["after"]["frame"] for m in events if m.json()["stream"] == name]
        assert frames == sorted(frames) and frames[0] <= 2, name
    # The flat figures still add up over all streams.
    flat = probe.on(topics.telemetry)[-1].json()
    assert flat["frames"] >= sum(f["frames"] for f in streams.values())


def test_an_unplugged_camera_comes_back_while_the_others_keep_producing(tmp_path: Path, mosquitto: Broker) -> None:
    tree = config(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    camera = SwitchableSource("noise", fps=20.0)
    with running_agent(tree, before_start=lambda a: setattr(a.frames.captures["yard"], "source", camera)) as agent:
        wait_until(lambda: all(stream_counts(probe, topics.events)[n] >= 5 for n in NAMES), 60, "every stream")
        camera.unplugged.set()
        wait_until(lambda: agent.frames.stream_figures()["yard"]["connected"] == 0, 10, "yard to drop")
        before = stream_counts(probe, topics.events)
        wait_until(lambda: all(stream_counts(probe, topics.events)[n] >= before[n] + 20 for n in NAMES
                               if n != "yard"), 30, "the other streams to go on")
        assert stream_counts(probe, topics.events)["yard"] <= before["yard"] + 2, "a dead camera sends nothing"
        camera.unplugged.clear()
        wait_until(lambda: stream_counts(probe, topics.events)["yard"] >= before["yard"] + 10, 30, "yard to return")
        figures = agent.frames.stream_figures()
    assert figures["yard"]["source_errors"] >= 2 and camera.opens >= 2
    assert all(figures[n]["source_errors"] == 0 for n in NAMES if n != "yard")
    assert np.all([figures[n]["connected"] == 1 for n in NAMES])
