"""The baseline the issue compares ingest with: a plain paho + SQLite subscriber (no validation, no fairness, no
isolation) that stores each telemetry message as a sample and the device's last seen time, committing every 0.2 s.

    python -m bench.plain_subscriber --broker 127.0.0.1:1883 --db /tmp/plain.sqlite --fleet bench
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sqlite3
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt


def main() -> None:
    """Subscribe and store until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--db", required=True)
    ap.add_argument("--fleet", default="bench")
    args = ap.parse_args()
    host, _, port = args.broker.partition(":")
    db = sqlite3.connect(args.db, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS samples (device_id TEXT, ts_ms INTEGER, received_ms INTEGER, seq INTEGER,"
               " body TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, last_seen_ms INTEGER,"
               " last_ts_ms INTEGER)")
    db.commit()
    inbox: queue.SimpleQueue[tuple[str, bytes, int]] = queue.SimpleQueue()
    stop = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        inbox.put((msg.topic, bytes(msg.payload), int(time.time() * 1000)))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain-subscriber")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(f"edgeferry/{args.fleet}/+/telemetry", qos=1)
    client.connect(host, int(port or 1883))
    client.loop_start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        deadline = time.monotonic() + 0.2
        rows, seen = [], {}
        while time.monotonic() < deadline:
            try:
                topic, payload, received = inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            device = topic.split("/")[2]
            rows.append((device, doc.get("ts"), received, doc.get("seq"), payload.decode()))
            seen[device] = (received, doc.get("ts"))
        if rows:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO devices VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                           "last_seen_ms = excluded.last_seen_ms, last_ts_ms = excluded.last_ts_ms",
                           [(d, r, t) for d, (r, t) in seen.items()])
            db.commit()
    client.loop_stop()
    db.close()


if __name__ == "__main__":
    main()
