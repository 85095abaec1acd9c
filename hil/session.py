"""One HIL session: the lab (namespaces, cloud side) plus a device target, and the helpers every scenario uses to
publish, start agents with a scenario's config, and read what the fleet side saw."""

from __future__ import annotations

import itertools
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hil.cloud import ACCESS_KEY, BUCKET, SECRET_KEY, CloudSide, Received
from hil.device import AgentHandle, DeviceTarget
from hil.errors import HilError
from hil.packages import BasePackage, Publisher
from hil.pair import PairHarness

log = logging.getLogger(__name__)

PROMETHEUS_PORT = 9464


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Session:
    """Lab + target + package; scenarios take one of these."""

    lab: PairHarness
    cloud: CloudSide
    target: DeviceTarget
    base: BasePackage
    out_dir: Path
    seed: int = 0
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    agents: list[AgentHandle] = field(default_factory=list)

    def new_id(self, scenario: str) -> str:
        """A fresh device id and model name stem for one scenario run."""
        return f"{scenario.replace('_', '-')}-{next(self._ids)}"

    def publisher(self, model: str) -> Publisher:
        """Publishes the base package under its own model name, so each scenario starts from an empty store."""
        renamed = BasePackage(self.base.manifest.model_copy(update={"name": model}), self.base.files, self.base.origin)
        pub = Publisher(self.cloud, renamed, self.key)
        self.target.write(f"{self.target.workdir}/trusted.pub", pub.public_pem())
        return pub

    def agent_config(self, run_id: str, model: str, variant: str, **over: Any) -> dict[str, Any]:
        """The agent's config for a scenario: S3 and MQTT through the cloud's proxies, events per frame, fast polls."""
        wd = f"{self.target.workdir}/{run_id}"
        host, port = self.cloud.mqtt_addr
        cfg: dict[str, Any] = {
            "device": {"fleet": "hil", "device_id": run_id, "command_state_path": f"{wd}/command-seq.json"},
            "sync": {
                "model": model,
                "store": {"uri": f"s3://{BUCKET}", "endpoint_url": self.cloud.s3_url, "region": "us-east-1",
                          "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "connect_timeout_s": 2,
                          "read_timeout_s": 3, "max_attempts": 3},
                "cache_dir": f"{wd}/cache", "trusted_keys": [f"{self.target.workdir}/trusted.pub"],
                "poll_interval_s": 0.5, "variant": variant, "backoff_s": 0.2, "retry_max_s": 2,
                "min_free_mb": 0,
            },
            "source": {"type": "synthetic", "width": 28, "height": 28, "fps": 30, "pattern": "digits",
                       "policy": "all", "queue_size": 64},
            "backend": {"type": "onnxruntime", "threads": 1},
            "events": {"mode": "every"},
            "mqtt": {"host": host, "port": port, "outbox_path": f"{wd}/outbox.sqlite", "telemetry_interval_s": 0.5,
                     "keepalive_s": 5, "reconnect_min_s": 1, "reconnect_max_s": 2, "outbox_max_messages": 100000},
            "daemon": {"prometheus_port": PROMETHEUS_PORT, "prometheus_host": "127.0.0.1"},
        }
        if "source" in over:  # a different source kind replaces the section (its fields differ)
            cfg["source"] = over.pop("source")
        return _merge(cfg, over)

    def start_agent(self, run_id: str, cfg: dict[str, Any], env: dict[str, str] | None = None,
                    name: str = "agent") -> AgentHandle:
        """Write the config and start the agent on the target."""
        path = f"{self.target.workdir}/{run_id}/agent.yaml"
        self.target.write(path, yaml.safe_dump(cfg).encode())
        handle = AgentHandle(self.target, f"{run_id}/{name}", path, env or {})
        self.agents.append(handle)
        return handle

    def stop_agents(self) -> None:
        """SIGTERM every agent still running (scenario teardown) and collect every agent's log into the report."""
        for a in self.agents:
            if a.alive():
                a.terminate(10)
            dest = self.out_dir / "logs" / self.target.kind / f"{a.name}.log"
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                dest.write_bytes(self.target.read(a.log_path))
            except (OSError, HilError) as exc:
                log.warning("could not collect %s: %s", a.log_path, exc)
        self.agents.clear()

    # -- what the fleet side saw ---------------------------------------------------------------------------------

    def topic(self, run_id: str, leaf: str) -> str:
        """Full topic of a device's leaf (events, telemetry, state, status)."""
        return f"edgeferry/hil/{run_id}/{leaf}"

    def messages(self, run_id: str, leaf: str, t0: float = 0.0) -> list[Received]:
        """Messages of one device and leaf since t0."""
        topic = self.topic(run_id, leaf)
        return [m for m in self.cloud.observer.since(t0) if m.topic == topic]

    def wait_serving(self, run_id: str, version: int, timeout: float, t0: float = 0.0) -> Received | None:
        """The first result event produced by `version` after t0."""
        topic = self.topic(run_id, "events")

        def pred(m: Received) -> bool:
            body = m.json() or {}
            return m.topic == topic and (body.get("after") or {}).get("model_version") == version

        return self.cloud.observer.wait_for(pred, timeout, t0)

    def wait_event(self, run_id: str, timeout: float, t0: float = 0.0) -> Received | None:
        """The first result event of a device after t0."""
        topic = self.topic(run_id, "events")
        return self.cloud.observer.wait_for(lambda m: m.topic == topic, timeout, t0)

    def wait_until(self, pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
        """Poll pred until it holds or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(step)
        return pred()

    def last_telemetry(self, run_id: str, t0: float = 0.0) -> dict[str, Any]:
        """The newest telemetry body of a device (empty when none)."""
        msgs = self.messages(run_id, "telemetry", t0)
        return dict(msgs[-1].json() or {}) if msgs else {}

    def scrape(self) -> str:
        """The agent's /metrics text, read on the device (its Prometheus endpoint listens on device loopback)."""
        code = (f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{PROMETHEUS_PORT}/metrics',"
                "timeout=5).read().decode())")
        return self.target.shell(f"{shlex.quote(self.target.python)} -c {shlex.quote(code)}", timeout=30).stdout

    def device_rx(self) -> int:
        """Bytes the device received over the lab link so far (IP level)."""
        return self.lab.device_rx_bytes()

    def s3_bytes(self) -> int:
        """Bytes the device has received from the store so far (counted by the S3 proxy)."""
        if self.cloud.s3_proxy is None:
            raise HilError("the S3 proxy is not running")
        return self.cloud.s3_proxy.counters().bytes_down


def histograms(metrics_text: str) -> dict[str, list[tuple[float, float]]]:
    """Per-stage cumulative buckets [(le seconds, count)] of edgeferry's stage latency histogram."""
    out: dict[str, list[tuple[float, float]]] = {}
    for line in metrics_text.splitlines():
        if "_bucket{" not in line or not line.startswith("edgeferry_"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1 : labels.rindex("}")].split(","))
        stage = fields.get("stage", "").strip('"')
        le = fields.get("le", "").strip('"')
        if stage and le:
            out.setdefault(stage, []).append((float("inf") if le == "+Inf" else float(le), float(value)))
    return {k: sorted(v) for k, v in out.items()}


def json_line(text: str) -> dict[str, Any]:
    """The last JSON object line of a text (a tool's summary)."""
    for line in reversed(text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise HilError(f"no JSON summary in: {text[-300:]}")
