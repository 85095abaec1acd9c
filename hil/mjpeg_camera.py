"""A stand-in network camera for HIL runs: serves numbered digit frames as an HTTP MJPEG stream at a fixed rate.

Each frame it sends is counted, so frames lost = frames served minus frames the agent inferred. Stopping the
process is "camera unplugged"; starting it again on the same port is "camera back".
"""

from __future__ import annotations

import argparse
import http.server
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import cv2
import numpy as np

BOUNDARY = "hilframe"


def frame_jpeg(index: int, width: int, height: int) -> bytes:
    """A JPEG of the frame's index drawn as digits, so a classifier sees changing content."""
    image = np.zeros((height, width, 3), np.uint8)
    scale = max(0.5, height / 40)
    cv2.putText(image, str(index % 10), (width // 4, int(height * 0.8)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(scale * 2)))
    ok, buf = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("cv2 could not encode a JPEG")
    return bytes(buf)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; append one line per frame sent ("<unix ms> <index>") to --log."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="Listen address.")
    p.add_argument("--port", type=int, required=True, help="Listen port.")
    p.add_argument("--fps", type=float, default=15.0, help="Frames per second.")
    p.add_argument("--size", type=int, default=64, help="Frame width and height in pixels.")
    p.add_argument("--log", type=Path, required=True, help="File that records every frame sent.")
    p.add_argument("--start-index", type=int, default=0, help="Index of the first frame (continues after a restart).")
    args = p.parse_args(argv)
    counter = [args.start_index]
    lock = threading.Lock()
    log_fh = args.log.open("a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            period = 1.0 / args.fps
            next_t = time.monotonic()
            try:
                while True:
                    with lock:
                        index = counter[0]
                        counter[0] += 1
                    body = frame_jpeg(index, args.size, args.size)
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body + b"\r\n"
                    )
                    self.wfile.flush()
                    log_fh.write(f"{int(time.time() * 1000)} {index}\n")
                    next_t += period
                    time.sleep(max(0.0, next_t - time.monotonic()))
            except OSError:
                return

    server = _Server((args.host, args.port), Handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print("listening", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
