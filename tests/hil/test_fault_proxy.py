"""The fault proxy forwards faithfully, and each fault does what a client on the other side would notice."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator

import pytest

from hil.errors import HilError
from hil.fault_proxy import DelayModel, FaultProxy, check_test_address

MakeProxy = Callable[..., FaultProxy]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.accepted += 1  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            return


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection((proxy.listen_host, proxy.port), timeout=10)
    sock.settimeout(10)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer reset or closed the connection (recv gives RST or EOF within the timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connection_turned_away(proxy: FaultProxy) -> bool:
    """A new connection is reset or closed at once (the reset may already land during connect on loopback)."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return True
    with sock:
        return closed_by_peer(sock)


def test_bytes_go_through_unchanged_and_are_counted(echo: EchoServer, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", echo.port)
    payload = bytes(range(256)) * 800  # 200 KiB, several chunks
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join(10)
    c = proxy.counters()
    assert (c.accepted, c.bytes_up, c.bytes_down) == (1, len(payload), len(payload))


def test_delay_with_jitter_keeps_every_byte_in_order(echo: EchoServer, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", echo.port, seed=7)
    proxy.set_delay(20, 15)
    with connect(proxy) as sock:
        sent = b"".join(f"{i:05d};".encode() for i in range(300))
        for i in range(0, len(sent), 60):  # many small writes: many chunks with different delays
            sock.sendall(sent[i : i + 60])
        assert recv_exactly(sock, len(sent)) == sent


def test_the_same_seed_gives_the_same_delays() -> None:
    a, b, c = DelayModel(seed=3), DelayModel(seed=3), DelayModel(seed=4)
    for m in (a, b, c):
        m.set(100, 40)
    seq_a = [a.next_s() for _ in range(50)]
    assert seq_a == [b.next_s() for _ in range(50)]
    assert seq_a != [c.next_s() for _ in range(50)]
    assert all(0.06 <= d <= 0.14 for d in seq_a)
    with pytest.raises(HilError, match="jitter_ms <= ms"):
        a.set(10, 20)


def test_stall_holds_data_without_closing_and_resume_delivers_it(echo: EchoServer, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", echo.port)
    with connect(proxy) as sock:
        sock.sendall(b"before")
        assert recv_exactly(sock, 6) == b"before"
        proxy.stall()
        sock.sendall(b"held")
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            sock.recv(16)  # nothing comes back while stalled, and the connection is not closed either
        proxy.resume()
        sock.settimeout(10)
        assert recv_exactly(sock, 4) == b"held"
    assert proxy.counters().dropped == 0


def test_drop_connections_resets_open_ones_and_new_ones_still_work(echo: EchoServer, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", echo.port)
    first, second = connect(proxy), connect(proxy)
    for sock in (first, second):
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    assert proxy.drop_connections() == 2
    assert closed_by_peer(first) and closed_by_peer(second)
    with connect(proxy) as third:
        third.sendall(b"again")
        assert recv_exactly(third, 5) == b"again"
    first.close()
    second.close()
    c = proxy.counters()
    assert (c.accepted, c.dropped) == (3, 2)


def test_refuse_closes_new_connections_before_they_reach_upstream(echo: EchoServer, fault_proxy: MakeProxy) -> None:
    proxy = fault_proxy("127.0.0.1", echo.port)
    with connect(proxy) as open_before:
        open_before.sendall(b"a")
        assert recv_exactly(open_before, 1) == b"a"
        proxy.refuse(True)
        assert connection_turned_away(proxy)
        open_before.sendall(b"b")  # connections open before the refusal are untouched
        assert recv_exactly(open_before, 1) == b"b"
        proxy.refuse(False)
        with connect(proxy) as later:
            later.sendall(b"c")
            assert recv_exactly(later, 1) == b"c"
    c = proxy.counters()
    assert (c.accepted, c.refused, echo.accepted) == (2, 1, 2)


def test_an_unreachable_upstream_resets_the_client(fault_proxy: MakeProxy) -> None:
    with socket.socket() as s:  # a port that is free, so nothing listens there
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    proxy = fault_proxy("127.0.0.1", dead_port)
    assert connection_turned_away(proxy)
    assert proxy.counters().upstream_failed == 1


def test_the_proxy_stops_by_itself_when_its_lifetime_ends(echo: EchoServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port, max_lifetime_s=1).start()
    sock = connect(proxy)
    try:
        assert proxy.join(timeout=30), "proxy still running after its lifetime"
        assert closed_by_peer(sock)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
        with pytest.raises(HilError, match="not running"):
            proxy.stall()
    finally:
        sock.close()
        proxy.stop()


def test_only_loopback_and_the_test_pool_are_allowed() -> None:
    assert check_test_address("127.0.0.1") == "127.0.0.1"
    assert check_test_address("10.213.44.1") == "10.213.44.1"
    for bad in ("10.0.0.1", "192.0.2.1", "0.0.0.0", "localhost"):
        with pytest.raises(HilError):
            check_test_address(bad)
