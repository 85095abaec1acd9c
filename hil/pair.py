"""The HIL lab's network: namespaces `ef-cloud-<id>` and `ef-dev-<id>` joined by one veth pair on a free /30, with
the link faults of hil.netns (carrier down/up, tbf shaping, blackhole stall) plus random packet loss (nftables in the
device namespace: this kernel has no netem). Nothing here touches the host's own interfaces.

Both namespaces are recorded like hil.netns records its own, so its session sweep and orphan sweep remove them too.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from hil import netns as _netns
from hil.errors import HilError

log = logging.getLogger(__name__)

_LOSS_TABLE = "edgeferry_hil_loss"


class PairHarness:
    """Two namespaces and the veth between them; a context manager that always deletes both."""

    def __init__(self, rng: random.Random | None = None) -> None:
        token = secrets.token_hex(3)
        self.cloud = f"{_netns.PREFIX}cloud-{token}"
        self.device = f"{_netns.PREFIX}dev-{token}"
        self.cloud_if = f"efc{token}"
        self.device_if = f"efd{token}"
        self.cloud_ip = ""
        self.device_ip = ""
        self._rng = rng or random.Random()
        self._procs: list[subprocess.Popen[Any]] = []
        self._shaping: tuple[float, int, float] | None = None
        self._stalled = False
        self._qdisc = False
        self._loss_pct = 0.0
        self._up = False

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def create(self) -> PairHarness:
        """Both namespaces with lo up, the veth and its addresses; on failure everything made so far is deleted."""
        _netns.STATE_DIR.mkdir(parents=True, exist_ok=True)
        for name, ifname in ((self.cloud, self.cloud_if), (self.device, self.device_if)):
            record = {"pid": os.getpid(), "name": name, "host_if": ifname}
            (_netns.STATE_DIR / f"{name}.json").write_text(json.dumps(record))
            _netns._CREATED.add(name)
        try:
            run = _netns._run
            run(["ip", "netns", "add", self.cloud])
            run(["ip", "netns", "add", self.device])
            run(["ip", "link", "add", self.cloud_if, "netns", self.cloud, "type", "veth", "peer", "name",
                 self.device_if, "netns", self.device])
            with _netns._alloc_lock():
                net = _netns.pick_subnet(_netns.host_networks(), self._rng)
                cloud_ip, device_ip = (str(a) for a in net.hosts())
                run(["ip", "-n", self.cloud, "addr", "add", f"{cloud_ip}/30", "dev", self.cloud_if])
            run(["ip", "-n", self.device, "addr", "add", f"{device_ip}/30", "dev", self.device_if])
            for ns, ifname in ((self.cloud, self.cloud_if), (self.device, self.device_if)):
                run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"])
                run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
            self.cloud_ip, self.device_ip = cloud_ip, device_ip
            self._up = True
            self._wait_carrier(True)
        except BaseException:
            self.close()
            raise
        log.info("lab up: %s %s <-> %s %s", self.cloud, self.cloud_ip, self.device, self.device_ip)
        return self

    def close(self) -> None:
        """Stop what was started inside, then delete both namespaces (which deletes the veth)."""
        for proc in reversed(self._procs):
            _netns._stop_process(proc)
        self._procs.clear()
        problems = [*_netns._delete(self.device, self.device_if), *_netns._delete(self.cloud, self.cloud_if)]
        if problems:
            raise HilError(f"lab namespaces not fully deleted: {'; '.join(problems)}")
        _netns._CREATED.discard(self.cloud)
        _netns._CREATED.discard(self.device)
        self._up = False

    def __enter__(self) -> PairHarness:
        return self.create()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def namespaces(self) -> tuple[str, str]:
        """(cloud, device) namespace names."""
        return self.cloud, self.device

    # -- running things inside ----------------------------------------------------------------------------------

    def run_in(self, ns: str, cmd: Sequence[str], *, timeout: float = 60, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside one of the two namespaces."""
        return _netns._run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)

    def spawn_in(self, ns: str, cmd: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start a command inside a namespace; stopped at close() if still running."""
        proc: subprocess.Popen[Any] = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **popen_kw)
        self._procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        """Stop tracking a process that ended (so close() does not wait on it again)."""
        if proc in self._procs:
            self._procs.remove(proc)

    # -- link faults (hil.runner.LinkFaults) -----------------------------------------------------------------------

    def link_down(self) -> None:
        """Carrier off on the cloud end: every packet on the link is lost, sockets stay open."""
        _netns._run(["ip", "-n", self.cloud, "link", "set", "dev", self.cloud_if, "down"])
        self._wait_carrier(False)

    def link_up(self) -> None:
        """Carrier back on, waiting until both ends report it."""
        _netns._run(["ip", "-n", self.cloud, "link", "set", "dev", self.cloud_if, "up"])
        self._wait_carrier(True)

    def rate_limit(self, rate_kbit: float, burst_bytes: int = 3200, latency_ms: float = 500) -> None:
        """tbf on both ends (kbit/s, bucket bytes, longest queueing delay ms)."""
        if rate_kbit <= 0 or burst_bytes < 1600 or latency_ms <= 0:
            raise HilError(f"rate_limit needs rate_kbit > 0, burst_bytes >= 1600 and latency_ms > 0, "
                           f"got {rate_kbit}, {burst_bytes}, {latency_ms}")
        self._shaping = (rate_kbit, burst_bytes, latency_ms)
        self._apply_qdisc()

    def unlimit(self) -> None:
        """Remove the shaping (a stall in force stays)."""
        self._shaping = None
        self._apply_qdisc()

    def stall(self) -> None:
        """Black-hole both directions without touching carrier or sockets."""
        self._stalled = True
        self._apply_qdisc()

    def resume(self) -> None:
        """End a stall; shaping set before it applies again."""
        self._stalled = False
        self._apply_qdisc()

    def set_loss(self, percent: float) -> None:
        """Drop this share of packets at random, both directions, in the device namespace (nftables numgen)."""
        if not 0 <= percent < 100:
            raise HilError(f"loss must be within 0..<100 %, got {percent}")
        if shutil.which("nft") is None:
            raise HilError("packet loss needs nftables (`apt-get install -y nftables`); this kernel has no netem")
        run = _netns._run
        run(["ip", "netns", "exec", self.device, "nft", "delete", "table", "inet", _LOSS_TABLE], check=False)
        self._loss_pct = percent
        if percent == 0:
            return
        per_mille = round(percent * 10)
        rules = "\n".join([
            f"table inet {_LOSS_TABLE} {{",
            *(f"  chain {hook} {{ type filter hook {hook} priority 0; policy accept; "
              f"iifname \"lo\" accept; oifname \"lo\" accept; numgen random mod 1000 < {per_mille} counter drop; }}"
              for hook in ("input", "output")),
            "}",
        ])
        proc = subprocess.run(["ip", "netns", "exec", self.device, "nft", "-f", "-"], input=rules, text=True,
                              capture_output=True, timeout=20, check=False)
        if proc.returncode != 0:
            raise HilError(f"cannot install the packet-loss rule in {self.device}: {proc.stderr.strip()}")

    def dropped_by_loss(self) -> int:
        """Packets the loss rule dropped so far (0 without one)."""
        if self._loss_pct == 0:
            return 0
        out = _netns._run(["ip", "netns", "exec", self.device, "nft", "list", "table", "inet", _LOSS_TABLE],
                          check=False).stdout
        return sum(int(tok) for tok in _counter_values(out))

    def device_rx_bytes(self) -> int:
        """Bytes the device end of the veth has received (IP level: payload plus TCP/IP headers)."""
        info = json.loads(_netns._run(["ip", "-n", self.device, "-s", "-j", "link", "show", "dev",
                                       self.device_if]).stdout)
        return int(info[0]["stats64"]["rx"]["bytes"])

    def clear(self) -> None:
        """No faults: link up, no shaping, no stall, no loss."""
        self._shaping = None
        self._stalled = False
        self._apply_qdisc()
        if self._loss_pct:
            self.set_loss(0)
        if not self._carrier(self.cloud, self.cloud_if):
            self.link_up()

    def overlimits(self) -> int:
        """Packets the shapers held back so far."""
        shown = _netns._run(["tc", "-n", self.cloud, "-s", "qdisc", "show", "dev", self.cloud_if]).stdout
        shown += _netns._run(["tc", "-n", self.device, "-s", "qdisc", "show", "dev", self.device_if]).stdout
        return sum(int(tok.split()[1]) for tok in _find(shown, "overlimits "))

    def _apply_qdisc(self) -> None:
        ends = ((self.cloud, self.cloud_if), (self.device, self.device_if))
        if self._stalled:
            spec = ["blackhole"]
        elif self._shaping is not None:
            rate, burst, latency = self._shaping
            spec = ["tbf", "rate", f"{rate:g}kbit", "burst", str(burst), "latency", f"{latency:g}ms"]
        else:
            if self._qdisc:
                for ns, dev in ends:
                    _netns._run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"])
                self._qdisc = False
            return
        for ns, dev in ends:
            _netns._run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", *spec])
        self._qdisc = True

    def _carrier(self, ns: str, ifname: str) -> bool:
        info = json.loads(_netns._run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname]).stdout)
        flags = info[0].get("flags", [])
        return "LOWER_UP" in flags and "UP" in flags

    def _wait_carrier(self, up: bool, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._carrier(self.device, self.device_if) == up:
                return
            time.sleep(0.05)
        raise HilError(f"link {self.cloud_if}<->{self.device_if} did not go {'up' if up else 'down'} in {timeout:g} s")


def _find(text: str, word: str) -> list[str]:
    """Each `word N` pair in text."""
    out, i = [], text.find(word)
    while i >= 0:
        out.append(text[i : i + len(word) + 20].split("\n")[0])
        i = text.find(word, i + 1)
    return out


def _counter_values(nft_listing: str) -> list[str]:
    """Packet counts of `counter packets N` entries (none unless rules carry counters)."""
    return [tok.split()[1] for tok in _find(nft_listing, "packets ")]
