"""`make demo`: a local Mosquitto, `fleet serve` with the web app and /metrics, one real agent and simulated devices,
the first of which play detectors (object events, snapshots and zone counts: fleet.sim.detector) with a zone alert.

Every child runs in its own process group; Ctrl-C (SIGINT), SIGTERM or `--duration` stops them all (SIGTERM, then
SIGKILL after a grace period) and the launcher exits only once every child has exited. Its state lives under
`.demo/` (config, keys, database, broker log); delete it to start afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import yaml

from dashboards.web.config import ZoneRule, default_rules
from dashboards.web.passwords import hash_password
from shared.signing import generate_keypair

FLEET, GROUP = "demo", "demo"
DEMO_USER, DEMO_PASSWORD = "demo", "demo-operator"
GRACE_S = 10.0
DEMO_AGENT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "edge-demo.yaml"
# Fires when a simulated detector's car has stood in its driveway for 20 s (some park for 25-60 s).
PARKED_CAR = ZoneRule(kind="zone", name="car_in_driveway", zone="driveway", labels=["car"], for_s=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


class Demo:
    """Starts the children in order and stops them all, whatever happens."""

    def __init__(self, root: Path, store: Path, devices: int, web_port: int, trusted_key: Path,
                 detectors: int = 2) -> None:
        self.root, self.store, self.devices, self.trusted_key = root, store, devices, trusted_key
        self.detectors = max(0, min(detectors, devices))
        self.broker_port, self.metrics_port, self.web_port = _free_port(), _free_port(), web_port or _free_port()
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stopping = False

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.children.append((name, proc))
        print(f"demo: started {name} (pid {proc.pid}, log {self.root / f'{name}.log'})", flush=True)
        return proc

    def _configs(self) -> tuple[Path, Path, Path, Path]:
        keys = self.root / "keys"
        key = keys / "fleet.key"
        if not key.exists():
            generate_keypair(key)
        broker = self.root / "mosquitto.conf"
        broker.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        fleet = self.root / "fleet.yaml"
        fleet.write_text(yaml.safe_dump({
            "fleet": FLEET,
            "broker": {"host": "127.0.0.1", "port": self.broker_port},
            "database": {"url": f"sqlite:///{(self.root / 'fleet.sqlite').resolve()}"},
            "commands": {"key": str(key.resolve())},
            "packages": {"store": {"uri": str(self.store.resolve())},
                         "trusted_keys": [str(self.trusted_key.resolve())]},
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port},
        }))
        web = self.root / "web.yaml"
        web.write_text(yaml.safe_dump({
            "host": "127.0.0.1", "port": self.web_port,
            "users": [{"name": DEMO_USER, "role": "operator", "password_hash": hash_password(DEMO_PASSWORD)}],
            "alerts": [r.model_dump() for r in [*default_rules(), PARKED_CAR]],
        }))
        return broker, fleet, web, key.with_suffix(".pub")

    def agent_args(self, command_key: Path, duration: float | None) -> list[str]:
        """The real agent's arguments: configs/edge-demo.yaml, pointed at this demo's broker, store and state.

        Without a duration it runs until the demo stops it: `--run.duration_s=null` overrides the file's 20 s.
        """
        cache = (self.root / "agent-cache").resolve()
        return ["--config", str(DEMO_AGENT_CONFIG), f"--device.fleet={FLEET}", "--device.device_id=demo-cam-1",
                f"--device.groups=[{GROUP}]", f"--device.command_keys=[{command_key.resolve()}]",
                f"--broker=127.0.0.1:{self.broker_port}", f"--sync.store.uri={self.store.resolve()}",
                f"--sync.trusted_keys=[{self.trusted_key.resolve()}]", f"--sync.cache_dir={cache}",
                f"--device.command_state_path={cache / 'command-seq.json'}",
                f"--mqtt.outbox_path={cache / 'outbox.sqlite'}",
                f"--run.duration_s={duration + 60:g}" if duration else "--run.duration_s=null"]

    def start(self, duration: float | None) -> None:
        """Broker, control plane, agent, simulator; then print where to look."""
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            raise SystemExit("demo: mosquitto is not installed: apt-get install -y mosquitto (or make system)")
        broker, fleet, web, pub = self._configs()
        ef = [sys.executable, "-m", "edgeferry.cli"]
        self._spawn("mosquitto", [mosquitto, "-c", str(broker)])
        if not _wait_port(self.broker_port, 10):
            raise SystemExit(f"demo: mosquitto did not listen on {self.broker_port}; see {self.root}/mosquitto.log")
        self._spawn("fleet", [*ef, "fleet", "serve", "--config", str(fleet), "--web-config", str(web)])
        self._spawn("agent", [*ef, "agent", *self.agent_args(pub, duration)])
        sim = [*ef, "sim", "--devices", str(self.devices), "--broker", f"127.0.0.1:{self.broker_port}",
               "--fleet", FLEET, "--group", GROUP, "--command-key", str(pub.resolve()), "--prefix", "sim",
               "--detectors", str(self.detectors)]
        self._spawn("sim", sim)
        up = _wait_port(self.web_port, 60)
        print(f"\n  fleet page:  http://127.0.0.1:{self.web_port}/   login {DEMO_USER} / {DEMO_PASSWORD} (operator)"
              f"{'' if up else '  (not answering yet: see ' + str(self.root / 'fleet.log') + ')'}\n"
              f"  Prometheus:  http://127.0.0.1:{self.metrics_port}/metrics (Grafana: deploy/grafana)\n"
              f"  MQTT broker: 127.0.0.1:{self.broker_port}\n"
              f"  Detectors:   the first {self.detectors} simulated devices (their device pages show snapshots, "
              f"zones and object events; alert {PARKED_CAR.name} fires for a parked car)\n"
              "  Ctrl-C stops everything.\n", flush=True)

    def watch(self, duration: float | None) -> int:
        """Until Ctrl-C, the duration, or a child dying early (its name and log are printed); returns exit code."""
        end = time.monotonic() + duration if duration else None
        while not self._stopping and (end is None or time.monotonic() < end):
            for name, proc in self.children:
                if proc.poll() is not None:
                    print(f"demo: {name} exited with {proc.returncode}; see {self.root / f'{name}.log'}",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
        return 0

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: leave watch() and stop."""
        self._stopping = True

    def stop(self) -> None:
        """Newest first (the broker last, so devices still say `stopped`): SIGTERM each child's process group, wait,
        SIGKILL it after the grace period."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                print(f"demo: {name} ignored SIGTERM for {GRACE_S:g} s; killing it", file=sys.stderr)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # anything the child left in its group
                os.killpg(proc.pid, signal.SIGKILL)
        print("demo: everything stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the demo, always stop the children."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help="Simulated devices (default 50).")
    parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
    parser.add_argument("--store", type=Path, default=Path(".store"), help="Model store with the digits package.")
    parser.add_argument("--state-dir", type=Path, default=Path(".demo"), help="Where configs and logs go.")
    parser.add_argument("--trusted-key", type=Path, default=Path(".keys/edgeferry.pub"),
                        help="Public key the package is signed with (make train-cloud's development key).")
    parser.add_argument("--web-port", type=int, default=8080, help="Fleet page port (0: any free port).")
    parser.add_argument("--detectors", type=int, default=2,
                        help="Simulated devices that also play detectors (default 2; 0: none).")
    args = parser.parse_args(argv)
    if not (args.store / "models/digits/latest.json").exists():
        print(f"demo: {args.store} has no digits package: run `make train-cloud` first", file=sys.stderr)
        return 1
    args.state_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.state_dir, args.store, args.devices, args.web_port, args.trusted_key, args.detectors)
    signal.signal(signal.SIGINT, demo.request_stop)
    signal.signal(signal.SIGTERM, demo.request_stop)
    try:
        demo.start(args.duration)
        return demo.watch(args.duration)
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
