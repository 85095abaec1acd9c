"""A loopback HTTP server over a LocalStore root that honours Range and can cut transfers short on purpose."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; the test changes it while the server runs."""

    root: Path
    # Close the connection after this many body bytes, for the first `cut_times` GETs of a matching key.
    cut_after: int | None = None
    cut_times: int = 1
    cut_key: str = ""
    # Answer 503 to this many requests first (transient outage).
    fail_first: int = 0
    # Send no Content-Length (the client learns the size only by reading to EOF), counting body bytes sent.
    omit_length: bool = False
    sent: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RangeServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the shared state."""

    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read state.requests instead."""

    def do_GET(self) -> None:
        state = self.server.state
        key = self.path.split("?", 1)[0].lstrip("/")
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((key, rng))
            if state.fail_first > 0:
                state.fail_first -= 1
                self.send_error(503, "try again")
                return
            cut = state.cut_after if state.cut_times > 0 and state.cut_key in key else None
            if cut is not None:
                state.cut_times -= 1
        path = state.root / key
        if ".." in key.split("/") or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if rng:
            m = _RANGE.match(rng)
            if not m:
                self.send_error(400, "only bytes=N- ranges")
                return
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if not state.omit_length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.omit_length:
            self.close_connection = True
            try:
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(body[i : i + (1 << 16)])
                    with state.lock:
                        state.sent += len(body[i : i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, ServerState]]:
    """Serve root over http://127.0.0.1:<port>/ while the block runs; yields (base URL, state)."""
    state = ServerState(root=root)
    server = RangeServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
