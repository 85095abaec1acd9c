"""The agent's telemetry path under test, as a process to run inside a namespace: publish N telemetry messages at
R/s through the real MqttLink and outbox, wait (bounded) until the broker acknowledged all, print a JSON summary.

Exit status 0 when the outbox drained, 1 when messages were left, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from edge.config import MqttConfig
from edge.link import MqttLink
from edge.telemetry import EnvelopeFactory
from shared.metrics import METRICS
from shared.payloads import TelemetryPayload
from shared.topics import DeviceTopics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the producer."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", required=True, help="Broker (or proxy) address as seen from the namespace.")
    p.add_argument("--port", type=int, required=True, help="Broker (or proxy) port.")
    p.add_argument("--count", type=int, required=True, help="Messages to publish.")
    p.add_argument("--rate", type=float, required=True, help="Messages per second.")
    p.add_argument("--outbox", type=Path, required=True, help="SQLite outbox file.")
    p.add_argument("--fleet", default="lab", help="Fleet id.")
    p.add_argument("--device", default="hil-1", help="Device id (also the MQTT client id).")
    p.add_argument("--keepalive", type=int, default=5, help="MQTT keepalive in seconds.")
    p.add_argument("--metrics", type=int, default=len(METRICS), help="Figures per message (payload size).")
    p.add_argument("--drain-timeout", type=float, default=120, help="Longest wait for the broker's PUBACKs.")
    args = p.parse_args(argv)
    if args.count < 1 or args.rate <= 0 or not 1 <= args.metrics <= len(METRICS):
        p.error(f"need --count >= 1, --rate > 0 and 1 <= --metrics <= {len(METRICS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Publish, drain, report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    cfg = MqttConfig(
        host=args.host, port=args.port, outbox_path=args.outbox, keepalive_s=args.keepalive,
        reconnect_min_s=1, reconnect_max_s=2, flush_timeout_s=5,
    )
    topics = DeviceTopics(args.fleet, args.device)
    # Values each metric accepts (counters are whole numbers, shares at most 1): the payload is checked at build.
    figures = {m.name: max(m.bounds[0], min(m.bounds[1], 1 if m.number_type == "int" else 1.5))
               for m in METRICS[: args.metrics]}
    envelopes = EnvelopeFactory(args.device)
    link = MqttLink(cfg, topics)
    link.start()
    max_depth = 0
    t0 = time.monotonic()
    for i in range(args.count):
        link.publish_json(topics.telemetry, TelemetryPayload.build(envelopes.next(), figures))
        max_depth = max(max_depth, link.outbox.depth())
        time.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
    deadline = time.monotonic() + args.drain_timeout
    while (link.outbox.depth() > 0 or link.in_flight() > 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = link.outbox.depth()
    counters = link.counters
    summary = {
        "produced": args.count, "left": left, "max_depth": max_depth, "published": counters.published,
        "rejected": counters.rejected, "connects": counters.connects, "disconnects": counters.disconnects,
        "dropped": link.metrics()["outbox_dropped"],
    }
    link.stop(timeout_s=5)
    print(json.dumps(summary), flush=True)
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
