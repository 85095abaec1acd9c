"""A fault-injecting TCP proxy for HIL runs: forwards a listen address to an upstream while faults are switched at run
time from the test thread (delay with seeded jitter, stall, reset of every connection, refusal of new ones).

It runs an asyncio loop in its own thread and stops itself after `max_lifetime_s`, so a test that forgets it
cannot leave it running. It only listens on and dials loopback or the 10.213.0.0/16 test namespaces; with `netns`
it does so inside that namespace (as the `cloud` end of a HIL lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from hil.errors import HilError
from hil.nsenter import enter_netns

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Chunks read but not yet written per direction; beyond it reading pauses, so a stall back-pressures the sender.
QUEUE_CHUNKS = 64
_ALLOWED = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv4Network("10.213.0.0/16"))
_CONTROL_TIMEOUT_S = 10.0
T = TypeVar("T")


def check_test_address(host: str) -> str:
    """Refuse any address but loopback and the test namespaces' pool, so faults never touch a real network."""
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise HilError(f"fault proxy needs a literal IPv4 address, got {host!r}") from exc
    if not any(ip in net for net in _ALLOWED):
        raise HilError(f"fault proxy may only use 127.0.0.0/8 or 10.213.0.0/16, not {host}")
    return host


class DelayModel:
    """Per-chunk delay: uniform in ms +/- jitter_ms, from a seeded RNG so a run can be repeated exactly."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.ms = 0.0
        self.jitter_ms = 0.0

    def set(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Change the delay; jitter larger than the delay is refused (delays cannot be negative)."""
        if ms < 0 or jitter_ms < 0 or jitter_ms > ms:
            raise HilError(f"delay needs 0 <= jitter_ms <= ms, got ms={ms}, jitter_ms={jitter_ms}")
        self.ms, self.jitter_ms = ms, jitter_ms

    def next_s(self) -> float:
        """The delay of the next chunk in seconds."""
        if self.jitter_ms == 0:
            return self.ms / 1000
        return (self.ms + self._rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000


@dataclasses.dataclass
class ProxyCounters:
    """What the proxy did so far; `bytes_up` is client to upstream."""

    accepted: int = 0
    active: int = 0
    refused: int = 0
    dropped: int = 0
    upstream_failed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class _Conn:
    """One proxied connection: both stream writers, so it can be reset as a whole."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def reset(self) -> None:
        for w in (self.client, self.upstream):
            _reset(w)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a NAT flush or a crashed middlebox looks to both peers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """TCP proxy listen_host:port -> upstream with run-time faults; a context manager."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
        max_lifetime_s: float = 300.0,
        netns: str | None = None,
    ) -> None:
        self.upstream = (check_test_address(upstream_host), upstream_port)
        self.listen_host = check_test_address(listen_host)
        self.port = listen_port
        self.max_lifetime_s = max_lifetime_s
        self.netns = netns  # listen and dial inside this namespace (its thread joins it), else where we are
        self._delay = DelayModel(seed)
        self._counters = ProxyCounters()
        self._lock = threading.Lock()
        self._refusing = False
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"fault-proxy-{upstream_port}", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind and start forwarding; returns once listening (self.port is then the bound port)."""
        self._thread.start()
        if not self._ready.wait(_CONTROL_TIMEOUT_S):
            raise HilError(f"fault proxy did not start listening on {self.listen_host} within {_CONTROL_TIMEOUT_S} s")
        if self._error is not None:
            raise HilError(f"fault proxy cannot listen on {self.listen_host}:{self.port}: {self._error}")
        log.info("fault proxy %s:%d -> %s:%d", self.listen_host, self.port, *self.upstream)
        return self

    def stop(self) -> None:
        """Stop listening and reset every open connection; waits for the proxy thread."""
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.join(_CONTROL_TIMEOUT_S)

    def join(self, timeout: float) -> bool:
        """Wait for the proxy to stop (after stop() or its lifetime); True if it has."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether the proxy still forwards."""
        return self._thread.is_alive()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- controls (any thread) ------------------------------------------------------------------------------------

    def set_delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Hold each chunk ms +/- jitter_ms before forwarding it (both directions, order kept)."""
        with self._lock:
            self._delay.set(ms, jitter_ms)

    def stall(self) -> None:
        """Stop forwarding in both directions without closing anything."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        """Forward again after a stall; held data goes out in order."""
        self._call(self._set_flowing(True))

    def drop_connections(self) -> int:
        """Reset every open connection on both sides (RST); returns how many were dropped."""
        return self._call(self._drop_all())

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are reset as soon as they are accepted; open ones are untouched."""
        with self._lock:
            self._refusing = on

    def clear(self) -> None:
        """No faults: no delay, forwarding, accepting."""
        self.set_delay(0, 0)
        self.refuse(False)
        self.resume()

    def counters(self) -> ProxyCounters:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._counters)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise HilError("the fault proxy is not running (stopped, or its lifetime ran out)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CONTROL_TIMEOUT_S)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, d in deltas.items():
                setattr(self._counters, name, getattr(self._counters, name) + d)

    # -- the loop thread ------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            if self.netns is not None:
                try:
                    enter_netns(self.netns)
                except HilError as exc:
                    self._error = exc
                    return
            self._loop.run_until_complete(self._main())
        finally:
            self._ready.set()
            self._loop.close()

    async def _main(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, self.listen_host, self.port, reuse_address=True)
        except OSError as exc:
            self._error = exc
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.max_lifetime_s)
        finally:
            server.close()
            await self._drop_all()
            await server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_flowing(self, on: bool) -> None:
        assert self._flowing is not None
        if on:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _drop_all(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.reset()
        self._conns.clear()
        self._count(dropped=len(conns), active=-len(conns))
        return len(conns)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        # Python 3.11's stream callback calls exception() on a cancelled handler task and logs the CancelledError
        # as an error; a handler cancelled at shutdown therefore ends normally instead.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_conn(c_reader, c_writer)

    async def _serve_conn(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        with self._lock:
            refusing = self._refusing
        if refusing:
            self._count(refused=1)
            _reset(c_writer)
            return
        try:
            u_reader, u_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), _CONTROL_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.warning("fault proxy cannot reach upstream %s:%d: %s", *self.upstream, exc)
            self._count(upstream_failed=1)
            _reset(c_writer)
            return
        conn = _Conn(c_writer, u_writer)
        self._conns.add(conn)
        self._count(accepted=1, active=1)
        pipes = {
            asyncio.ensure_future(self._pipe(c_reader, u_writer, "bytes_up")),
            asyncio.ensure_future(self._pipe(u_reader, c_writer, "bytes_down")),
        }
        try:
            # Both directions run to EOF (half-close is forwarded); the first error ends the connection.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if conn in self._conns:
                self._conns.discard(conn)
                self._count(active=-1)
                conn.reset()
            for p in pipes:
                p.cancel()
            for r in await asyncio.gather(*pipes, return_exceptions=True):
                if isinstance(r, OSError):
                    log.debug("proxied connection ended: %s", r)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, counter: str) -> None:
        """Forward one direction until EOF; each chunk is released at its arrival plus its delay, never before an
        earlier chunk, and not while stalled."""
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last = 0.0
            while True:
                await self._flowing.wait()  # type: ignore[union-attr]
                data = await src.read(CHUNK)
                if not data:
                    await queue.put(None)
                    return
                with self._lock:
                    delay = self._delay.next_s()
                last = max(last, loop.time() + delay)
                await queue.put((last, data))

        async def write() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                release, data = item
                if (wait := release - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()  # type: ignore[union-attr]
                self._count(**{counter: len(data)})  # before write: a peer that has the bytes sees them counted
                dst.write(data)
                await dst.drain()

        reader = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
