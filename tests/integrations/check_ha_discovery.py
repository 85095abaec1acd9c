"""Home Assistant's own MQTT discovery code checks our configs: schema, ignored keys, template warnings, availability.

Not collected by `make test` (the first run installs Home Assistant, about 3 minutes on a 2-core machine): run it
with `make check-ha` (part of `make check-integrations`). Without a Python >= 3.13 or without PyPI it FAILS,
naming what is missing; it never passes without having run Home Assistant.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.detection.config import DetectionConfig
from edge.frame_stats import FrameStats
from edge.ha_detection import detection_configs
from edge.ha_discovery import HA_PREFIX, discovery_configs, rollout_configs
from edge.ha_streams import stream_configs
from edge.system_stats import SystemStats
from shared.metrics import METRICS
from shared.object_events import ObjectEventPayload, ObjectState
from shared.payloads import ModelInfo, StatePayload
from shared.streams import STREAM_METRICS
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED, DeviceTopics

pytestmark = pytest.mark.slow

# 2026.2.3 is the newest release that runs on Python 3.13 (later ones need 3.14.2); it knows default_entity_id and
# still accepts object_id with a deprecation, so the check sees both.
HA_VERSION = os.environ.get("EDGEFERRY_HA_VERSION", "2026.2.3")
VENV = Path(os.environ.get("EDGEFERRY_HA_VENV", ".cache/ha-venv"))
PROBE = Path(__file__).with_name("ha_schema_probe.py")
# Seconds between progress lines while Home Assistant installs (make check-ha runs pytest with -s to show them).
PROGRESS_EVERY_S = float(os.environ.get("EDGEFERRY_PROGRESS_EVERY_S", "30"))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_with_progress(argv: Sequence[str], what: str, echo: Callable[[str], None] = _say,
                      every_s: float = PROGRESS_EVERY_S) -> subprocess.CompletedProcess[str]:
    """Run a long pip command, saying what it is, then every `every_s` seconds how long it has run and how many
    packages pip has collected so far (one line at a time, never one per package), then how it ended."""
    echo(f"check-ha: {what} (the first run takes a few minutes; later runs reuse it)")
    start = time.monotonic()
    out: list[str] = []
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every_s):
            packages = sum(line.startswith("Collecting ") for line in list(out))
            echo(f"check-ha: {what}: {time.monotonic() - start:.0f} s, {packages} packages collected so far")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        for line in proc.stdout:
            out.append(line)
        proc.wait()
    finally:
        done.set()
        ticker.join()
    text = "".join(out)
    result = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    echo(f"check-ha: {what}: {result} in {time.monotonic() - start:.0f} s")
    return subprocess.CompletedProcess(list(argv), proc.returncode, text, text)


def _find_python() -> str:
    """A Python >= 3.13 for Home Assistant: EDGEFERRY_HA_PYTHON, then pyenv's, then PATH."""
    candidates = [os.environ.get("EDGEFERRY_HA_PYTHON", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[3-9]*/bin/python")), reverse=True)
    candidates += [shutil.which(n) or "" for n in ("python3.14", "python3.13")]
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info >= (3, 13))"],
                               capture_output=True, text=True, check=False)
        if probe.stdout.strip() == "True":
            return exe
    pytest.fail("Home Assistant check did not run: it needs Python >= 3.13 and none was found "
                "(set EDGEFERRY_HA_PYTHON, or `pyenv install 3.13`)")


def ha_python() -> Path:
    """The Python of a venv with Home Assistant installed; built once under .cache/ (rebuilt if half-made)."""
    marker = VENV / f".homeassistant-{HA_VERSION}"
    python = VENV / "bin" / "python"
    if marker.exists() and python.exists():
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([_find_python(), "-m", "venv", str(VENV)], check=True)
    # The pinned release asks for 3.13.2; the 3.13.0 these machines have runs it (checked by this very test).
    install = run_with_progress(
        [str(python), "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check",
         "--ignore-requires-python", f"homeassistant=={HA_VERSION}"],
        f"installing Home Assistant {HA_VERSION} into {VENV}",
    )
    if install.returncode != 0:
        pytest.fail(f"Home Assistant check did not run: pip install homeassistant=={HA_VERSION} failed "
                    f"(is PyPI reachable?):\n{install.stderr[-2000:]}")
    marker.write_text(HA_VERSION + "\n")
    return python


def run_probe(configs: list[tuple[str, dict[str, Any]]], reports: list[dict[str, Any]],
              tmp_path: Path, expect: dict[str, list[Any]] | None = None,
              more: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """more: reports of other topics by their last level (a detector's object `events`)."""
    spec = {
        "prefix": HA_PREFIX,
        "configs": configs,
        "reports": {"telemetry": reports, "state": [state for state, _, _ in state_reports()], **(more or {})},
        "expect": expect or {},
        "statuses": {STATUS_ONLINE: True, STATUS_STOPPED: False, STATUS_OFFLINE: False},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([str(ha_python()), str(PROBE), str(path)], capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, f"Home Assistant probe crashed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


def agent_reports() -> list[dict[str, float]]:
    """What telemetry carries over an agent's life: before the first frame, while running, and every figure."""
    stats = FrameStats()
    first = {**stats.values(now=0.0), **SystemStats().sample()}
    for i in range(20):
        stats.record(0.001, 0.0005, 0.002, 0.0001, 0.0002, 0.004, end=1.0 + i * 0.05)
    running = {**stats.values(now=2.0), **SystemStats().sample(), "model_version": 3.0}
    every = {m.name: 1.0 for m in METRICS}
    return [first, running, every]


def state_reports() -> list[tuple[dict[str, Any], dict[str, str], str]]:
    """(state payload, the update entity's versions, the rollout sensor) over a device's life: an older agent that
    sends no desired_version, no model yet but one desired, converging from 3 to 4, converged, and rolled back."""
    topics = DeviceTopics("lab", "cam-1")

    def state(version: int | None, desired: int | None, name: str | None = "digits") -> dict[str, Any]:
        payload = StatePayload(device_id=topics.device_id, boot_id="b", seq=1, ts=1, agent_version="0.1.0",
                               model=ModelInfo(name=name, version=version), hardware={}, config_digest="d",
                               desired_version=desired)
        return payload.model_dump(mode="json")

    older = state(3, None)
    older.pop("desired_version")
    return [
        (older, {"installed_version": "3", "latest_version": "3", "title": "digits model"}, "OFF"),
        (state(None, 2, None), {"installed_version": "none", "latest_version": "2", "title": "no model"}, "ON"),
        (state(3, 4), {"installed_version": "3", "latest_version": "4", "title": "digits model"}, "ON"),
        (state(4, 4), {"installed_version": "4", "latest_version": "4", "title": "digits model"}, "OFF"),
        (state(4, 3), {"installed_version": "4", "latest_version": "3", "title": "digits model"}, "ON"),
    ]


def test_every_config_passes_home_assistants_discovery_schema_without_warnings(tmp_path: Path) -> None:
    configs = discovery_configs(DeviceTopics("lab", "cam-1"), "0.1.0")
    result = run_probe(configs, agent_reports(), tmp_path)
    assert result["checked"] == len(METRICS) + 2
    assert result["problems"] == [], "\n".join(result["problems"])
    print(f"Home Assistant {result['home_assistant']}: {result['checked']} configs clean", file=sys.stderr)


def test_home_assistant_renders_installed_vs_desired_version_and_rollout_in_progress(tmp_path: Path) -> None:
    configs = rollout_configs(DeviceTopics("lab", "cam-1"), "0.1.0")
    (update_topic, update), (rollout_topic, _) = configs
    assert "command_topic" not in update and "payload_install" not in update  # HA cannot sign: no install action
    cases = state_reports()
    expect: dict[str, list[Any]] = {update_topic: [u for _, u, _ in cases], rollout_topic: [r for _, _, r in cases]}
    result = run_probe(configs, [], tmp_path, expect)
    assert [topic.split("/")[1] for topic, _ in configs] == ["update", "binary_sensor"]
    assert result["checked"] == 2
    assert result["problems"] == [], "\n".join(result["problems"])


def test_the_probe_reports_what_home_assistant_would_complain_about(tmp_path: Path) -> None:
    topics = DeviceTopics("lab", "cam-1")
    _, good = discovery_configs(topics, "0.1.0")[0]
    legacy = {**good, "object_id": "x", "value_template": "{{ value_json.temp_c }}",
              "availability_template": "{{ value }}"}
    legacy.pop("default_entity_id")
    wrong_unit = {**good, "device_class": "temperature", "unit_of_measurement": "ms"}
    _, rollout = rollout_configs(topics, "0.1.0")[1]
    raw_rollout = {**rollout, "value_template": "{{ value_json.get('desired_version') }}"}
    result = run_probe(
        [("homeassistant/sensor/n/legacy/config", legacy), ("homeassistant/sensor/n/unit/config", wrong_unit),
         ("homeassistant/binary_sensor/n/rollout/config", raw_rollout)],
        [{"fps": 1.0}], tmp_path,
    )
    text = "\n".join(result["problems"])
    assert "deprecated object_id" in text
    assert "no attribute 'temp_c'" in text
    assert "status 'stopped' makes the device available=None" in text
    assert "not valid together with device class `temperature`" in text
    assert "binary sensor state '4' is neither 'ON' nor 'OFF'" in text


def object_events() -> list[dict[str, Any]]:
    """A person's new, update and end events as a detection agent sends them."""
    state = ObjectState(id="1-1", label="person", class_id=0, score=0.8, top_score=0.9, box=(1, 2, 3, 4), area=4,
                        current_zones=["driveway"], entered_zones=["driveway"], first_seen_ms=1, last_seen_ms=2,
                        frame_time_ms=2, frame=1)
    return [ObjectEventPayload(device_id="cam-1", boot_id="b", seq=i, ts=1, type=t, before=state, after=state)
            .model_dump(mode="json") for i, t in enumerate(("new", "update", "end"))]


def test_home_assistant_takes_a_detectors_zone_sensors_object_event_entity_and_triggers(tmp_path: Path) -> None:
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    cfg = DetectionConfig.model_validate({"objects": ["person", "car"], "zones": {"driveway": {"coordinates": square}}})
    configs = detection_configs(DeviceTopics("lab", "cam-1"), "0.1.0", cfg)
    node = "homeassistant/{}/edgeferry_lab_cam-1/{}/config"
    before = {"device_id": "cam-1", "boot_id": "b", "seq": 1, "ts": 1, "fps": 5.0}  # no zone counted yet
    counted = {**before, "zone_counts": {"driveway": 2, "driveway/person": 2}}
    expect: dict[str, list[Any]] = {
        node.format("sensor", "zone_driveway"): ["", "2"],
        node.format("sensor", "zone_driveway_person"): ["", "2"],
        node.format("sensor", "zone_driveway_car"): ["", ""],
        node.format("binary_sensor", "zone_driveway_occupancy"): ["OFF", "ON"],
        node.format("binary_sensor", "zone_driveway_person_occupancy"): ["OFF", "ON"],
        node.format("binary_sensor", "zone_driveway_car_occupancy"): ["OFF", "OFF"],
        node.format("device_automation", "object_new"): ["new", "update", "end"],
        node.format("device_automation", "object_end"): ["new", "update", "end"],
    }
    result = run_probe(configs, [before, counted], tmp_path, expect, {"events": object_events()})
    assert sorted(t.split("/")[1] for t, _ in configs) == (
        ["binary_sensor"] * 3 + ["device_automation"] * 2 + ["event"] + ["sensor"] * 3)
    assert result["checked"] == 9
    assert result["problems"] == [], "\n".join(result["problems"])


def test_home_assistant_takes_a_multi_stream_agents_stream_sensors(tmp_path: Path) -> None:
    configs = stream_configs(DeviceTopics("lab", "cam-1"), "0.1.0", ["door", "yard_2"])
    node = "homeassistant/sensor/edgeferry_lab_cam-1/{}/config"
    single = {"device_id": "cam-1", "boot_id": "b", "seq": 1, "ts": 1, "fps": 5.0, "streams": None}
    multi = {**single, "streams": {"door": {"processed_fps": 14.5, "frames": 40}, "yard_2": {"connected": 0}}}
    expect: dict[str, list[Any]] = {
        node.format("stream_4_door_processed_fps"): ["", "14.5"],
        node.format("stream_4_door_frames"): ["", "40"],
        node.format("stream_4_door_e2e_ms_p99"): ["", ""],
        node.format("stream_6_yard_2_connected"): ["", "0"],
    }
    result = run_probe(configs, [single, multi], tmp_path, expect)
    assert result["checked"] == 2 * len(STREAM_METRICS)
    assert result["problems"] == [], "\n".join(result["problems"])
