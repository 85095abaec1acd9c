"""The namespace harness: a working private link, faults a process inside would notice, and nothing left behind."""

from __future__ import annotations

import ipaddress
import json
import random
import re
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from hil import netns as netns_mod
from hil.errors import HilError
from hil.netns import NetnsHarness, link_exists, list_namespaces, pick_subnet, sweep_created, sweep_orphans

# Inside the namespace: connect, then echo each stdin line through the server and print the answer.
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
print("connected", flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    got = b""
    while not got.endswith(b"\\n"):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed")
        got += chunk
    print(len(got), got[:20].decode().strip(), flush=True)
"""
# Inside the namespace: one connect attempt; exit 0 if it connects.
DIAL = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(60)
        try:
            while line := self.rfile.readline():
                self.wfile.write(line)
        except OSError:
            return


class Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_on_host(netns: NetnsHarness) -> Iterator[tuple[str, int]]:
    """A line echo server on the host end of the veth (reachable only from the namespace and the host)."""
    server = Echo((netns.host_ip, 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield netns.host_ip, int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(10)


def dial(ns: NetnsHarness, addr: tuple[str, int], timeout: float = 2) -> bool:
    """Whether a fresh TCP connection from inside the namespace gets through."""
    return ns.run_in([sys.executable, "-c", DIAL, addr[0], str(addr[1]), str(timeout)], check=False).returncode == 0


class Client:
    """A long-lived connection from inside the namespace, driven line by line."""

    def __init__(self, ns: NetnsHarness, addr: tuple[str, int]) -> None:
        self.proc = ns.spawn_in(
            [sys.executable, "-c", CLIENT, addr[0], str(addr[1]), "60"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert self.readline() == "connected"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the client itself times out after 60 s
        assert line, f"client in the namespace exited ({self.proc.poll()})"
        return line.strip()

    def echo(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.readline()


pytestmark = pytest.mark.netns


def test_the_namespace_has_its_own_link_to_the_host(netns: NetnsHarness, echo_on_host: tuple[str, int]) -> None:
    t = netns.target
    assert t.name.startswith("ef-") and t.name in list_namespaces()
    assert t.host_addr.network == t.ns_addr.network and t.host_addr.network.prefixlen == 30
    assert t.host_addr.network.subnet_of(ipaddress.IPv4Network("10.213.0.0/16"))
    inside = json.loads(netns.run_in(["ip", "-4", "-j", "addr", "show"]).stdout)
    addrs = {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]] for link in inside}
    assert addrs == {"lo": ["127.0.0.1/8"], t.ns_if: [str(t.ns_addr)]}  # nothing else is reachable from inside
    assert Client(netns, echo_on_host).echo("hello") == "6 hello"


def test_link_down_blocks_new_connections_but_open_ones_resume_after_link_up(
    netns: NetnsHarness, echo_on_host: tuple[str, int]
) -> None:
    client = Client(netns, echo_on_host)
    assert client.echo("one") == "4 one"
    netns.link_down()
    assert not dial(netns, echo_on_host)
    assert client.proc.stdin is not None
    client.proc.stdin.write("two\n")  # sent while the carrier is off: TCP keeps retransmitting
    client.proc.stdin.flush()
    netns.link_up()
    assert client.readline() == "4 two"
    assert dial(netns, echo_on_host)


def test_rate_limit_shapes_both_ends_and_still_delivers_everything(
    netns: NetnsHarness, echo_on_host: tuple[str, int]
) -> None:
    netns.rate_limit(128, burst_bytes=3200, latency_ms=1000)
    shown = netns.qdiscs()
    assert all(re.search(r"tbf .*rate 128Kbit burst 3200b", q) for q in shown.values()), shown
    client = Client(netns, echo_on_host)
    big = "x" * 20_000  # six times the bucket: the shaper must hold packets back
    assert client.echo(big) == f"{len(big) + 1} {'x' * 20}"
    assert netns.overlimits() > 0
    netns.unlimit()
    assert not any("tbf" in q for q in netns.qdiscs().values())
    assert client.echo("after") == "6 after"


def test_stall_black_holes_without_closing_and_resume_restores_the_shaping(
    netns: NetnsHarness, echo_on_host: tuple[str, int]
) -> None:
    netns.rate_limit(128)
    client = Client(netns, echo_on_host)
    netns.stall()
    assert all("blackhole" in q for q in netns.qdiscs().values())
    assert not dial(netns, echo_on_host)
    assert client.proc.stdin is not None
    client.proc.stdin.write("held\n")
    client.proc.stdin.flush()
    netns.resume()
    assert client.readline() == "5 held"
    assert all("tbf" in q for q in netns.qdiscs().values())


def test_clear_removes_every_fault(netns: NetnsHarness, echo_on_host: tuple[str, int]) -> None:
    netns.rate_limit(32)
    netns.stall()
    netns.link_down()
    netns.clear()
    assert not any(k in q for q in netns.qdiscs().values() for k in ("tbf", "blackhole"))
    assert dial(netns, echo_on_host)


def test_a_failing_command_inside_raises_with_its_stderr(netns: NetnsHarness) -> None:
    with pytest.raises(HilError, match="no-such-dev"):
        netns.run_in(["ip", "link", "show", "dev", "no-such-dev"])


def test_bad_shaping_is_refused(netns: NetnsHarness) -> None:
    with pytest.raises(HilError, match="burst_bytes >= 1600"):
        netns.rate_limit(64, burst_bytes=100)


def test_teardown_deletes_namespace_veth_and_processes_even_when_the_test_fails(
    netns_factory: Callable[[], NetnsHarness],
) -> None:
    with pytest.raises(RuntimeError, match="test body failed"), NetnsHarness() as ns:
        sleeper = ns.spawn_in(["sleep", "300"])
        raise RuntimeError("test body failed")
    assert ns.name not in list_namespaces()
    assert not link_exists(ns.host_if)
    assert sleeper.poll() is not None
    assert not (netns_mod.STATE_DIR / f"{ns.name}.json").exists()


def test_session_sweep_deletes_what_this_run_left_behind(netns_factory: Callable[[], NetnsHarness]) -> None:
    forgotten = NetnsHarness().create()  # never closed, as after a crashed fixture
    kept = netns_factory()
    assert forgotten.name in sweep_created()
    assert forgotten.name not in list_namespaces() and not link_exists(forgotten.host_if)
    # The sweep also takes `kept`; its fixture teardown then finds nothing left to delete.
    assert kept.name not in list_namespaces()


def test_orphans_of_dead_runs_are_swept_and_live_runs_left_alone(netns_factory: Callable[[], NetnsHarness]) -> None:
    orphan, live = netns_factory(), netns_factory()
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    record = netns_mod.STATE_DIR / f"{orphan.name}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "pid": dead.pid}))
    assert orphan.name in sweep_orphans()
    assert orphan.name not in list_namespaces() and not link_exists(orphan.host_if)
    assert live.name in list_namespaces()


def test_subnets_are_random_free_slash_30s_of_the_pool() -> None:
    rng = random.Random(1)
    used = [ipaddress.IPv4Network("10.213.0.0/17")]
    nets = {pick_subnet(used, rng) for _ in range(50)}
    assert len(nets) > 40
    for net in nets:
        assert net.prefixlen == 30 and net.subnet_of(ipaddress.IPv4Network("10.213.128.0/17"))
    assert pick_subnet(used, random.Random(5)) == pick_subnet(used, random.Random(5))
    with pytest.raises(HilError, match="no free /30"):
        pick_subnet([ipaddress.IPv4Network("10.213.0.0/16")], rng)


def test_two_namespaces_get_different_subnets_and_cannot_reach_each_other(
    netns_factory: Callable[[], NetnsHarness],
) -> None:
    a, b = netns_factory(), netns_factory()
    assert not a.target.host_addr.network.overlaps(b.target.host_addr.network)
    with socket.create_server((b.host_ip, 0)) as listener:  # the kernel completes handshakes without accept()
        addr = (b.host_ip, int(listener.getsockname()[1]))
        assert dial(b, addr)
        assert not dial(a, addr, timeout=1)


def test_namespace_tests_skip_only_without_root_or_iproute2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 1000)
    assert "not root (euid 1000)" in str(netns_mod.netns_unavailable())
    monkeypatch.setattr(netns_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns_mod.shutil, "which", lambda tool: None if tool == "tc" else f"/usr/sbin/{tool}")
    assert "tc not found: install iproute2" in str(netns_mod.netns_unavailable())
    monkeypatch.setattr(netns_mod.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    assert netns_mod.netns_unavailable() is None
