"""Local HIL target: a network namespace joined to the host by a veth pair on a private /30, with link faults.

Faults act on the link itself: carrier down/up (host end), token-bucket shaping (`tbf`, both ends) and a stall
(`blackhole` qdisc, both ends). This kernel has no netem, so delay and jitter live in the fault proxy instead.
Every namespace this process creates is recorded (in memory and in a pid file) so a session sweep, or the next run
after a crash, deletes what was left behind; namespaces of other live test runs are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from hil.errors import HilError
from hil.plan import NetnsTarget

log = logging.getLogger(__name__)

PREFIX = "ef-"
POOL = ipaddress.IPv4Network("10.213.0.0/16")
STATE_DIR = Path(tempfile.gettempdir()) / "edgeferry-hil"
_CREATED: set[str] = set()
_CMD_TIMEOUT_S = 20.0


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here (not root, iproute2 missing), or None when they can."""
    if os.geteuid() != 0:
        return f"not root (euid {os.geteuid()}): network namespaces need root; CI runs the suite as root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install iproute2 (`apt-get install -y iproute2`, as .ci/run does)"
    return None


def pick_subnet(used: Iterable[ipaddress.IPv4Network], rng: random.Random, tries: int = 512) -> ipaddress.IPv4Network:
    """A random /30 of 10.213.0.0/16 that overlaps none of `used`."""
    taken = list(used)
    blocks = POOL.num_addresses // 4
    for _ in range(tries):
        net = ipaddress.IPv4Network((int(POOL.network_address) + 4 * rng.randrange(blocks), 30))
        if not any(net.overlaps(u) for u in taken):
            return net
    raise HilError(f"no free /30 in {POOL} after {tries} tries; delete stale ef-* namespaces and veths")


def _run(
    args: Sequence[str], *, check: bool = True, timeout: float = _CMD_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HilError(f"`{' '.join(args)}` did not finish within {timeout:g} s") from exc
    if check and proc.returncode != 0:
        raise HilError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def host_networks() -> list[ipaddress.IPv4Network]:
    """Networks in use on the host that a new /30 of the pool must not overlap: addresses and narrow routes."""
    nets: list[ipaddress.IPv4Network] = []
    for link in json.loads(_run(["ip", "-4", "-j", "addr", "show"]).stdout or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network)
    for route in json.loads(_run(["ip", "-4", "-j", "route", "show", "table", "all"]).stdout or "[]"):
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        # Broad routes (10.0.0.0/8 via a gateway) are shadowed by our /30 and do not conflict.
        if net.prefixlen >= POOL.prefixlen:
            nets.append(net)
    return nets


def list_namespaces() -> set[str]:
    """Names of the network namespaces `ip netns` knows."""
    out = _run(["ip", "netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_exists(ifname: str) -> bool:
    """Whether the host has a network device of this name."""
    return _run(["ip", "link", "show", "dev", ifname], check=False).returncode == 0


@contextlib.contextmanager
def _alloc_lock() -> Iterator[None]:
    """Serialise subnet choice and address assignment across concurrent test processes."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "alloc.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _delete(name: str, host_if: str) -> list[str]:
    """Delete the veth pair, then the namespace; problems returned rather than raised so both are attempted."""
    problems: list[str] = []
    if link_exists(host_if):
        proc = _run(["ip", "link", "del", "dev", host_if], check=False)
        if proc.returncode != 0 and link_exists(host_if):
            problems.append(f"ip link del {host_if}: {proc.stderr.strip()}")
    if name in list_namespaces():
        _kill_members(name)
        proc = _run(["ip", "netns", "del", name], check=False)
        if proc.returncode != 0 and name in list_namespaces():
            problems.append(f"ip netns del {name}: {proc.stderr.strip()}")
    (STATE_DIR / f"{name}.json").unlink(missing_ok=True)
    return problems


def _kill_members(name: str) -> None:
    """SIGKILL every process still inside the namespace: deleting a namespace does not end what runs in it, and a
    run killed -9 leaves its broker and agent behind for the sweep to end."""
    out = _run(["ip", "netns", "pids", name], check=False).stdout
    for pid in (int(tok) for tok in out.split() if tok.isdigit()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def sweep_created() -> list[str]:
    """Delete every namespace this process created and has not deleted; returns the names swept."""
    swept = []
    for name in sorted(_CREATED):
        problems = _delete(name, _host_if(name))
        if problems:
            log.error("could not delete leftover namespace %s: %s", name, "; ".join(problems))
        else:
            swept.append(name)
            _CREATED.discard(name)
    return swept


def sweep_orphans() -> list[str]:
    """Delete namespaces recorded by test processes that no longer exist (killed runs); returns the names swept."""
    swept = []
    for record in sorted(STATE_DIR.glob(f"{PREFIX}*.json")) if STATE_DIR.is_dir() else []:
        try:
            owner = json.loads(record.read_text())
            pid, name, host_if = int(owner["pid"]), str(owner["name"]), str(owner["host_if"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable namespace record %s: %s", record, exc)
            continue
        if _alive(pid):
            continue
        problems = _delete(name, host_if)
        if problems:
            log.error("could not delete orphaned namespace %s: %s", name, "; ".join(problems))
        else:
            swept.append(name)
    return swept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_if(name: str) -> str:
    return "efh" + name[len(PREFIX) :]


class NetnsHarness:
    """One namespace `ef-<hex>` with lo up and a veth pair on a free /30 of 10.213.0.0/16; a context manager that
    always deletes both."""

    def __init__(self, rng: random.Random | None = None) -> None:
        token = secrets.token_hex(4)
        self.name = f"{PREFIX}{token}"
        self.host_if = _host_if(self.name)
        self.ns_if = f"efn{token}"
        self._rng = rng or random.Random()
        self._target: NetnsTarget | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._shaping: tuple[float, int, float] | None = None
        self._stalled = False
        self._qdisc_installed = False

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def create(self) -> NetnsHarness:
        """Create namespace, veth pair and addresses; on any failure everything made so far is deleted."""
        if self._target is not None:
            raise HilError(f"namespace {self.name} already exists; create a new harness")
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "name": self.name, "host_if": self.host_if}
        (STATE_DIR / f"{self.name}.json").write_text(json.dumps(record))
        _CREATED.add(self.name)
        try:
            _run(["ip", "netns", "add", self.name])
            _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name])
            with _alloc_lock():
                net = pick_subnet(host_networks(), self._rng)
                host_ip, ns_ip = list(net.hosts())
                _run(["ip", "addr", "add", f"{host_ip}/30", "dev", self.host_if])
            _run(["ip", "link", "set", "dev", self.host_if, "up"])
            _run(["ip", "-n", self.name, "addr", "add", f"{ns_ip}/30", "dev", self.ns_if])
            _run(["ip", "-n", self.name, "link", "set", "dev", self.ns_if, "up"])
            _run(["ip", "-n", self.name, "link", "set", "dev", "lo", "up"])
            self._target = NetnsTarget(
                name=self.name,
                host_if=self.host_if,
                ns_if=self.ns_if,
                host_addr=ipaddress.IPv4Interface(f"{host_ip}/30"),
                ns_addr=ipaddress.IPv4Interface(f"{ns_ip}/30"),
            )
            self._wait_carrier(True)
        except BaseException:
            self.close()
            raise
        log.info("namespace %s up: host %s <-> ns %s", self.name, self._target.host_addr, self._target.ns_addr)
        return self

    def close(self) -> None:
        """Stop processes started in the namespace, then delete the veth pair and the namespace."""
        for proc in self._procs:
            _stop_process(proc)
        self._procs.clear()
        problems = _delete(self.name, self.host_if)
        if problems:
            raise HilError(f"namespace {self.name} not fully deleted: {'; '.join(problems)}")
        _CREATED.discard(self.name)
        self._target = None

    def __enter__(self) -> NetnsHarness:
        return self.create()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def target(self) -> NetnsTarget:
        """The contract description of this namespace."""
        if self._target is None:
            raise HilError(f"namespace {self.name} is not created (or already deleted)")
        return self._target

    @property
    def host_ip(self) -> str:
        """Host end address; what the namespace dials to reach services on the host."""
        return str(self.target.host_addr.ip)

    @property
    def ns_ip(self) -> str:
        """Namespace end address."""
        return str(self.target.ns_addr.ip)

    # -- running things inside ----------------------------------------------------------------------------------

    def _exec(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.target.name, *cmd]

    def run_in(
        self, cmd: Sequence[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace to completion (bounded by timeout); HilError if it fails and check."""
        return _run(self._exec(cmd), check=check, timeout=timeout)

    def spawn_in(self, cmd: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a command inside the namespace; it is stopped when the harness closes if still running."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self._exec(cmd), **popen_kw)
        self._procs.append(proc)
        return proc

    # -- faults ---------------------------------------------------------------------------------------------------

    def link_down(self) -> None:
        """Carrier off: the host end goes down and every packet on the link is dropped; sockets stay open."""
        _run(["ip", "link", "set", "dev", self.target.host_if, "down"])
        self._wait_carrier(False)

    def link_up(self) -> None:
        """Carrier back on, waiting until both ends report it."""
        _run(["ip", "link", "set", "dev", self.target.host_if, "up"])
        self._wait_carrier(True)

    def rate_limit(self, rate_kbit: float, burst_bytes: int = 3200, latency_ms: float = 500) -> None:
        """Shape both directions with tbf (rate in kbit/s, bucket in bytes, max queueing delay in ms)."""
        if rate_kbit <= 0 or burst_bytes < 1600 or latency_ms <= 0:
            raise HilError(
                f"rate_limit needs rate_kbit > 0, burst_bytes >= 1600 and latency_ms > 0, "
                f"got {rate_kbit}, {burst_bytes}, {latency_ms}"
            )
        self._shaping = (rate_kbit, burst_bytes, latency_ms)
        self._apply_qdisc()

    def unlimit(self) -> None:
        """Remove the shaping (a stall in force stays)."""
        self._shaping = None
        self._apply_qdisc()

    def stall(self) -> None:
        """Black-hole both directions (blackhole qdisc) without touching the carrier or any socket."""
        self._stalled = True
        self._apply_qdisc()

    def resume(self) -> None:
        """End a stall; shaping set before it applies again."""
        self._stalled = False
        self._apply_qdisc()

    def clear(self) -> None:
        """No faults: link up, no shaping, no stall."""
        self._shaping = None
        self._stalled = False
        self._apply_qdisc()
        if not self._carrier(self.target.host_if, None):
            self.link_up()

    def qdiscs(self) -> dict[str, str]:
        """`tc qdisc show` of each end, for checks."""
        t = self.target
        return {
            t.host_if: _run(["tc", "qdisc", "show", "dev", t.host_if]).stdout,
            t.ns_if: _run(["tc", "-n", t.name, "qdisc", "show", "dev", t.ns_if]).stdout,
        }

    def overlimits(self) -> int:
        """Packets the shapers on both ends had to hold back so far (0 while nothing was shaped)."""
        t = self.target
        shown = _run(["tc", "-s", "qdisc", "show", "dev", t.host_if]).stdout
        shown += _run(["tc", "-n", t.name, "-s", "qdisc", "show", "dev", t.ns_if]).stdout
        return sum(int(n) for n in re.findall(r"overlimits (\d+)", shown))

    def _apply_qdisc(self) -> None:
        t = self.target
        ends = [["tc", "qdisc"], ["tc", "-n", t.name, "qdisc"]]
        devs = [t.host_if, t.ns_if]
        if self._stalled:
            spec = ["blackhole"]
        elif self._shaping is not None:
            rate, burst, latency = self._shaping
            spec = ["tbf", "rate", f"{rate:g}kbit", "burst", str(burst), "latency", f"{latency:g}ms"]
        else:
            if self._qdisc_installed:
                for tc, dev in zip(ends, devs, strict=True):
                    _run([*tc, "del", "dev", dev, "root"])
                self._qdisc_installed = False
            return
        for tc, dev in zip(ends, devs, strict=True):
            _run([*tc, "replace", "dev", dev, "root", *spec])
        self._qdisc_installed = True

    def _carrier(self, ifname: str, netns: str | None) -> bool:
        prefix = ["ip", "-n", netns] if netns else ["ip"]
        info = json.loads(_run([*prefix, "-j", "link", "show", "dev", ifname]).stdout)
        return "LOWER_UP" in info[0].get("flags", []) and "UP" in info[0].get("flags", [])

    def _wait_carrier(self, up: bool, timeout: float = 10.0) -> None:
        t = self.target
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._carrier(t.host_if, None) == up and (
                not up or self._carrier(t.ns_if, t.name)
            ):
                return
            time.sleep(0.05)
        raise HilError(f"link {t.host_if} did not go {'up' if up else 'down'} within {timeout:g} s")


def _stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 5 s; the process must not keep the namespace alive."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
