"""`edgeferry agent` as a process: signals, reload, bounded runs, bad input, and no torch on the device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.edge.small_fs import small_tmpfs
from tests.fixtures.broker import Broker, MqttProbe
from tests.integration.agent_harness import agent_config, send_command, topics_of, write_public_key

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]


def _setup(tmp_path: Path, broker: Broker, **over: Any) -> tuple[Path, dict[str, Any]]:
    keys = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "tiny", 1, keys)
    tree = agent_config(
        tmp_path, store, write_public_key(keys, tmp_path / "k.pub"), broker,
        {"type": "synthetic", "width": 32, "height": 32, "fps": 25}, **{"events.mode": "change", **over},
    )
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path, tree


def test_sigterm_finishes_flushes_and_says_stopped(tmp_path: Path, mosquitto: Broker) -> None:
    path, tree = _setup(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    proc = subprocess.Popen([*EDGEFERRY, "agent", "--config", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1, 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    probe.wait_for(lambda m: m.topic == topics.status and m.text == "stopped", 10)
    final = probe.on(topics.telemetry)[-1].json()
    assert final["frames"] > 0
    seqs = [m.json()["seq"] for m in probe.messages if m.topic != topics.status]
    assert seqs == sorted(seqs)


def test_a_full_disk_does_not_stop_a_clean_shutdown(tmp_path: Path, mosquitto: Broker) -> None:
    with small_tmpfs(tmp_path / "small", 4096) as fs:
        path, tree = _setup(tmp_path, mosquitto, **{"mqtt.outbox_path": str(fs.path / "outbox.sqlite"),
                                                     "events.mode": "every"})
        topics = topics_of(tree)
        probe = MqttProbe(mosquitto, f"{topics.base}/#")
        proc = subprocess.Popen([*EDGEFERRY, "agent", "--config", str(path)], stderr=subprocess.PIPE, text=True)
        try:
            probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("model_version") == 1, 30)
            fs.fill()
            probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 5)
            # Events keep coming from the frame loop while nothing more can be written.
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            proc.kill()
        probe.wait_for(lambda m: m.topic == topics.status and m.text == "stopped", 10, "retained stopped")
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()


def test_sighup_reloads_the_config_file(tmp_path: Path, mosquitto: Broker) -> None:
    path, tree = _setup(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    proc = subprocess.Popen([*EDGEFERRY, "agent", "--config", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        first = probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 30).json()
        tree["events"]["mode"] = "every"
        path.write_text(yaml.safe_dump(tree))
        proc.send_signal(signal.SIGHUP)
        probe.wait_for(
            lambda m: m.topic == topics.state and m.json()["config_digest"] != first["config_digest"], 15,
            "state with the reloaded config",
        )
        probe.wait_for(lambda m: m.topic == topics.events and m.json()["type"] == "frame", 10, "per-frame events")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_set_config_validates_and_reports_what_needs_a_restart(tmp_path: Path, mosquitto: Broker) -> None:
    path, tree = _setup(tmp_path, mosquitto)
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    proc = subprocess.Popen([*EDGEFERRY, "agent", "--config", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_for(lambda m: m.topic == topics.state and m.json()["model"]["version"] == 1, 30)
        bad, _ = send_command(probe, topics, "set-config", {"values": {"mqtt.port": 99999}})
        assert not bad["ok"] and "mqtt.port" in bad["error"]
        anchor, _ = send_command(probe, topics, "set-config", {"values": {"mqtt.keepalive_s": 9}})
        assert not anchor["ok"] and "mqtt.keepalive_s" in anchor["error"] and "local config file" in anchor["error"]
        good, _ = send_command(
            probe, topics, "set-config", {"values": {"events.mode": "every", "source.queue_size": 9}}
        )
        assert good["ok"] and good["result"]["applied"] == ["events.mode"]
        assert good["result"]["restart_required"] == ["source.queue_size"]
        unknown, _ = send_command(probe, topics, "reboot", {})
        assert not unknown["ok"] and "unknown command" in unknown["error"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_bounded_run_with_flags_and_no_broker(tmp_path: Path, mosquitto: Broker) -> None:
    path, _ = _setup(tmp_path, mosquitto)
    port = mosquitto.port
    mosquitto.stop()
    out = subprocess.run(
        [*EDGEFERRY, "agent", "--config", str(path), "--max-frames", "40", f"--mqtt.port={port}",
         "--events.mode", "every"],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "after 40 frames" in out.stderr


def test_bad_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  port: 99999\n")
    out = subprocess.run([*EDGEFERRY, "agent", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "mqtt.port" in out.stderr
    env = {**os.environ, "EDGEFERRY_SOURCE__TYPE": "webcam"}
    out = subprocess.run([*EDGEFERRY, "agent"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 1 and "source" in out.stderr


def test_agent_runs_without_torch_or_lightning(tmp_path: Path, mosquitto: Broker) -> None:
    path, _ = _setup(tmp_path, mosquitto)
    code = f"""
import sys, threading
from edgeferry.cli import app
sys.argv = ["edgeferry", "agent", "--config", {str(path)!r}, "--max-frames", "20"]
try:
    app()
except SystemExit as e:
    assert not e.code, e.code
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning"))
print("HEAVY=" + ",".join(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_json_logs(tmp_path: Path, mosquitto: Broker) -> None:
    path, _ = _setup(tmp_path, mosquitto)
    out = subprocess.run(
        [*EDGEFERRY, "agent", "--config", str(path), "--max-frames", "5", "--log-json"],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert lines and {"ts", "level", "logger", "msg"} <= set(lines[0])


def test_systemd_notifications_and_prometheus_metrics(tmp_path: Path, mosquitto: Broker) -> None:
    import socket
    import urllib.request

    from tests.fixtures.ports import free_port

    path, tree = _setup(tmp_path, mosquitto)
    topics = topics_of(tree)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    proc = subprocess.Popen(
        [*EDGEFERRY, "agent", "--config", str(path), f"--daemon.prometheus_port={port}"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        seen: list[str] = []
        while "READY=1" not in seen or "WATCHDOG=1" not in seen:
            seen += sock.recv(4096).decode().split("\n")
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("frames", 0) > 0, 30)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "edgeferry_frames_total" in body and 'device="' in body
        assert "edgeferry_e2e_p99_seconds" in body
        assert 'edgeferry_stage_latency_seconds_bucket{' in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        while "STOPPING=1" not in seen:
            seen += sock.recv(4096).decode().split("\n")
    finally:
        proc.kill()
        sock.close()


def test_unreadable_source_is_counted_and_the_agent_keeps_answering(tmp_path: Path, mosquitto: Broker) -> None:
    path, tree = _setup(tmp_path, mosquitto)
    tree["source"] = {"type": "video_file", "path": str(tmp_path / "no-such-camera.avi"),
                      "reconnect_backoff_s": 0.2}
    path.write_text(yaml.safe_dump(tree))
    topics = topics_of(tree)
    probe = MqttProbe(mosquitto, f"{topics.base}/#")
    proc = subprocess.Popen([*EDGEFERRY, "agent", "--config", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_for(lambda m: m.topic == topics.telemetry and m.json().get("source_errors", 0) >= 2, 30,
                       "telemetry counting source errors")
        ping, _ = send_command(probe, topics, "ping", {})
        assert ping["ok"] and ping["result"]["model"]["version"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
