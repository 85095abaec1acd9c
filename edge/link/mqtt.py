"""The real broker link: MQTT 5 over paho (the only module of edge/ that imports it), outbox-backed delivery.

Non-retained messages (telemetry, events, command replies) are written to the SQLite outbox and a sender thread
drains it in order while connected, with a bounded number awaiting PUBACK; a row is deleted only when its PUBACK
arrives. Retained messages (status, state) are "latest value wins": kept in memory and published directly on every
(re)connect. paho's `publish()` reports success while disconnected and `wait_for_publish()` can hang, so neither
is relied on: delivery is tracked through on_publish by message id. The sender runs under edge.supervise, and
a delivered row the disk will not let it delete waits in memory for a retry, so nothing ends delivery.

Hand-off: when the link is up and the sender has sent everything older, the producing thread publishes its
freshly committed row itself (the same tracking: the row stays in the outbox until its PUBACK), so a paced result
costs no thread wake-up; otherwise, or while the sender is busy, the row waits for the sender as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel

from edge.config import MqttConfig
from edge.errors import LinkError, OutboxError
from edge.link.base import MessageHandler, check_topic, encode_json
from edge.link.lanes import SNAPSHOT_LANE, LaneBudget
from edge.link.outbox import Outbox, OutboxMessage
from edge.link.tls import tls_context
from edge.supervise import Health, spawn
from shared.topics import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED, DeviceTopics

log = logging.getLogger(__name__)

QOS = 1
# Room in paho's own in-flight accounting for direct (retained) publishes on top of the outbox window.
_DIRECT_HEADROOM = 16
# The sender's name in Health (thread_errors, the state payload's degraded components).
SENDER = "mqtt-sender"
# How long delivered rows wait before their deletion is tried again when the disk refused it.
ACK_RETRY_S = 1.0
# _publish_direct's answer when paho did not take the message: the row is tried again on the next pass.
_NOT_TAKEN = -1
# Delivered rows are deleted in groups: once this many are acknowledged or the oldest waited ACK_DELAY_S, so a
# steady stream costs one DELETE transaction (and one sender wake-up) per group instead of one per PUBACK. A kill
# in between re-sends at most that group after the restart (QoS 1 is at-least-once anyway).
ACK_BATCH = 32
ACK_DELAY_S = 0.05


@dataclass
class _Flight:
    """A publish handed to paho and not yet acknowledged."""

    row_id: int | None
    topic: str


@dataclass
class LinkCounters:
    """What the link did since it was created."""

    enqueued: int = 0
    published: int = 0
    rejected: int = 0
    connects: int = 0
    disconnects: int = 0
    # Rows the producing thread published itself (no sender hand-off); a subset of those sent.
    direct: int = 0


class MqttLink:
    """MQTT 5 link: status/LWT, retained state, durable in-order delivery of the outbox, subscriptions."""

    def __init__(
        self,
        cfg: MqttConfig,
        topics: DeviceTopics,
        outbox: Outbox | None = None,
        *,
        client_id: str | None = None,
        health: Health | None = None,
    ) -> None:
        self._cfg = cfg
        # A shared Health is reported by its owner (the agent); a private one by this link's metrics().
        self._owns_health = health is None
        self._health = health or Health()
        self._topics = topics
        self._owns_outbox = outbox is None
        self._outbox = outbox or Outbox(cfg.outbox_path, cfg.outbox_max_messages, cfg.outbox_synchronous)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inflight: dict[int, _Flight] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self._acked_rows: list[int] = []
        self._first_ack_at = 0.0
        # The sender waits for PUBACKs (a full window, or in-flight messages after a reconnect): wake it on each.
        self._sender_awaits_acks = False
        self._ack_retry_at = 0.0
        self._ack_failing = False
        # Held while rows are handed to paho and the send position moves (the sender or a producer going direct).
        self._send_lock = threading.Lock()
        self._sent_upto = 0
        self._seen_generation = 0
        self._drain_runs = 0
        self._degraded = False
        self._retained: dict[str, bytes] = {}
        self._subs: dict[str, SubscribeOptions] = {}
        # Rows may wait that only the sender will send (a backlog from the last run, after a reconnect, a producer
        # that could not go direct): the sender reads the outbox only then, not on every wake-up for PUBACKs.
        self._pending = True
        self._generation = 0
        self._window = cfg.max_inflight
        self._connected = threading.Event()
        self._stop_sender = threading.Event()
        self._sender: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self.counters = LinkCounters()
        self._client = self._make_client(client_id or topics.device_id)

    def _make_client(self, client_id: str) -> mqtt.Client:
        cfg = self._cfg
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        ctx = tls_context(cfg)
        if ctx is not None:
            client.tls_set_context(ctx)
            if cfg.tls and cfg.tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self._topics.status, STATUS_OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, max(cfg.reconnect_min_s, cfg.reconnect_max_s))
        client.max_inflight_messages_set(cfg.max_inflight + _DIRECT_HEADROOM)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a broker session is up right now."""
        return self._connected.is_set()

    @property
    def outbox(self) -> Outbox:
        """The queue this link drains."""
        return self._outbox

    def start(self) -> None:
        """Connect in the background and start draining the outbox; returns at once even if the broker is down."""
        if self._started:
            raise LinkError("an MQTT link can be started once; create a new one")
        self._started = True
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._cfg.session_expiry_s
        self._client.connect_async(
            self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()
        self._sender = spawn(SENDER, self._drain_forever, self._stop_sender, self._health)
        log.info("MQTT link to %s:%d started as %s", self._cfg.host, self._cfg.port, self._topics.device_id)

    def stop(self, status: str = STATUS_STOPPED, timeout_s: float | None = None) -> None:
        """Drain what the outbox can within the bound, publish `status` retained, disconnect cleanly (no LWT)."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            self._close_outbox()
            return
        deadline = time.monotonic() + (self._cfg.flush_timeout_s if timeout_s is None else timeout_s)
        while self.connected and self._undelivered() > 0 and time.monotonic() < deadline:
            with self._wake:
                self._wake.wait(0.05)
        self._stop_sender.set()
        with self._wake:
            self._wake.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=5)
        self._apply_acks(force=True)
        if self.connected:
            with self._wake:
                self._retained[self._topics.status] = status.encode()
            mid = self._publish_direct(self._topics.status, status.encode(), retain=True)
            while mid is not None and time.monotonic() < deadline + 1 and self.connected:
                with self._wake:
                    if mid not in self._inflight:
                        break
                    self._wake.wait(0.05)
        left = self._undelivered()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._close_outbox()
        log.info("MQTT link stopped (%s); %d messages left in the outbox for the next run", status, left)

    def _close_outbox(self) -> None:
        if self._owns_outbox:
            self._outbox.close()

    def _undelivered(self) -> int:
        """Rows not yet acknowledged by the broker (delivered rows the disk would not let us delete excluded)."""
        with self._wake:
            pending = len(self._acked_rows)
        return max(0, self._outbox.depth() - pending)

    # -- publishing ---------------------------------------------------------------------------------------------

    def publish_json(
        self, topic: str, payload: BaseModel | Mapping[str, Any], retain: bool = False, *,
        budget: LaneBudget | None = None,
    ) -> None:
        """Retained: remembered and sent now or on connect. Otherwise queued durably (in the budget's lane when
        given); marked replayed if offline."""
        if retain:
            self._publish_retained(topic, encode_json(payload))
        else:
            self._enqueue(topic, encode_json(payload, replayed=not self.connected), budget)

    def publish_json_many(self, topic: str, payloads: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Queue non-retained JSON messages on one topic, in order, in one outbox transaction and one sender wake;
        returns once all of them are durable (or counted as refused by a full disk)."""
        replayed = not self.connected
        checked = check_topic(topic)
        data = [(checked, encode_json(p, replayed=replayed)) for p in payloads]
        ids = self._outbox.put_many(data, qos=QOS)
        rows = [(i, t, d) for i, (t, d) in zip(ids, data, strict=True) if i is not None]
        if not rows:
            return  # the disk refused them: counted by the outbox (outbox_write_errors), nothing to send
        with self._wake:
            self.counters.enqueued += len(rows)
        self._send_or_wake(rows)

    def publish_text(self, topic: str, text: str, retain: bool = False) -> None:
        """Plain text, with the same delivery rules as publish_json."""
        if retain:
            self._publish_retained(topic, text.encode())
        else:
            self._enqueue(topic, text.encode())

    def _enqueue(self, topic: str, data: bytes, budget: LaneBudget | None = None) -> None:
        checked = check_topic(topic)
        row_id = self._outbox.put(checked, data, qos=QOS, budget=budget)
        if row_id is None:
            return  # the disk refused it: counted by the outbox (outbox_write_errors), nothing to send
        with self._wake:
            self.counters.enqueued += 1
        self._send_or_wake([(row_id, checked, data)])

    def _send_or_wake(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """Publish committed rows from this thread when nothing older waits and the window has room; the rest
        (a backlog ahead, a full window, a reconnect not yet settled) wakes the sender as before."""
        if self._connected.is_set():
            with self._send_lock:  # held by the sender only for one read and one window of publishes
                if self._sent_upto >= rows[-1][0]:
                    return  # the sender took them while this thread waited for the lock
                if self._may_go_direct(rows[0][0]):
                    for row_id, topic, data in rows:
                        if not self._window_has_room():
                            break
                        if self._publish_direct(topic, data, retain=False, row_id=row_id) == _NOT_TAKEN:
                            break
                        self._sent_upto = row_id
                        with self._wake:
                            self.counters.direct += 1
                    if self._sent_upto == rows[-1][0]:
                        return
        with self._wake:
            self._pending = True
            self._wake.notify_all()

    def _may_go_direct(self, first_id: int) -> bool:
        """Rows from first_id on may skip the sender: everything older is sent and the session is the one the
        sender has settled after its last reconnect. Caller holds the send lock."""
        if self._sent_upto != first_id - 1:
            return False  # older rows wait (replay after an outage, another producer's, a gap): keep the order
        with self._wake:
            return self._connected.is_set() and self._generation == self._seen_generation

    def _window_has_room(self) -> bool:
        """Another queued row may await its PUBACK without exceeding the window."""
        with self._wake:
            return self._rows_in_flight() < self._window

    def _publish_retained(self, topic: str, data: bytes) -> None:
        check_topic(topic)
        with self._wake:
            self._retained[topic] = data
            now = self._connected.is_set()
        # Not connected: _on_connect copies the slot under the same lock, so the value cannot be missed.
        if now:
            self._publish_direct(topic, data, retain=True)

    def _publish_direct(self, topic: str, data: bytes, retain: bool, row_id: int | None = None) -> int | None:
        """Hand one message to paho and track its PUBACK: the mid, None if dropped as refused, _NOT_TAKEN if paho
        did not queue it. Never called with our lock held (paho holds its own lock while calling on_publish,
        which takes ours)."""
        try:
            info = self._client.publish(topic, data, qos=QOS, retain=retain)
        except ValueError as exc:
            log.error("dropping a message paho refuses on %s: %s", topic, exc)
            with self._wake:
                self.counters.rejected += 1
                if row_id is not None:
                    self._note_acked(row_id)
            return None
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # Not queued by paho (queue full): leave the row for the next pass.
            log.warning("paho did not accept a message for %s: %s", topic, mqtt.error_string(info.rc))
            return _NOT_TAKEN
        # rc NO_CONN: paho keeps the message and sends it after the next CONNACK, so it is in flight all the same.
        with self._wake:
            early = self._early_acks.pop(info.mid, None)
            flight = _Flight(row_id, topic)
            if early is None:
                self._inflight[info.mid] = flight
            else:
                self._settle(flight, early)
        return info.mid

    def _settle(self, flight: _Flight, reason: ReasonCode) -> None:
        """Record a PUBACK; caller holds the lock."""
        if reason.is_failure:
            # Retrying a message the broker refuses (ACL, quota) would block the queue forever: drop and count it.
            self.counters.rejected += 1
            log.warning("broker refused a message on %s: %s", flight.topic, reason)
        else:
            self.counters.published += 1
        if flight.row_id is not None:
            self._note_acked(flight.row_id)
        if self._sender_awaits_acks or len(self._acked_rows) >= ACK_BATCH or flight.row_id is None:
            self._wake.notify_all()

    def _note_acked(self, row_id: int) -> None:
        """A delivered row to delete with its group; caller holds the lock."""
        if not self._acked_rows:
            self._first_ack_at = time.monotonic()
            # Rows sent directly never woke the sender: let it time this group's deletion (one wake per group).
            self._wake.notify_all()
        self._acked_rows.append(row_id)

    # -- sender -------------------------------------------------------------------------------------------------

    def _rows_in_flight(self) -> int:
        return sum(1 for f in self._inflight.values() if f.row_id is not None)

    def _apply_acks(self, force: bool = False) -> None:
        """Delete acknowledged rows; a disk that refuses keeps them in memory for a retry (never raises)."""
        with self._wake:
            if not self._acked_rows or (not force and not self._acks_due()):
                return
            acked, self._acked_rows = self._acked_rows, []
        try:
            self._outbox.ack_many(acked)
        except OutboxError as exc:
            with self._wake:
                self._acked_rows[:0] = acked
                self._ack_retry_at = time.monotonic() + ACK_RETRY_S
                first = not self._ack_failing
                self._ack_failing = True
            if first:
                # Delivery goes on meanwhile: only deletion waits, and at worst a restart sends those rows again.
                log.error("%s; retrying every %.0f s, delivery continues", exc, ACK_RETRY_S)
                self._health.failed(SENDER, exc)
                self._degraded = True
            return
        if self._ack_failing:
            self._ack_failing = False
            log.warning("outbox %s: delivered messages are removed again", self._outbox.path)

    def _acks_due(self) -> bool:
        """A group of delivered rows is ready for deletion (full, old enough, or the sender stops); caller holds
        the lock."""
        if not self._acked_rows:
            return False
        now = time.monotonic()
        if now < self._ack_retry_at:
            return False
        return (len(self._acked_rows) >= ACK_BATCH or now - self._first_ack_at >= ACK_DELAY_S
                or self._stop_sender.is_set())

    def _idle_wait_s(self) -> float:
        """How long the sender may sleep with nothing to send: until the pending group of deletions is due."""
        if not self._acked_rows:
            return 0.5
        due = max(self._first_ack_at + ACK_DELAY_S, self._ack_retry_at)
        return min(0.5, max(0.001, due - time.monotonic()))

    def _drain_forever(self) -> None:
        """The sender body (run under supervise.keep_running): its position survives a restart after a failure,
        so nothing in flight is sent twice and nothing is skipped."""
        self._drain_runs += 1
        with self._wake:
            self._pending = True  # a restart after a failed read reads again
        if self._drain_runs > 1:
            self._degraded = True
        while not self._stop_sender.is_set():
            self._apply_acks()
            with self._wake:
                if not self._connected.is_set():
                    self._wake.wait(0.5)
                    continue
                in_flight = self._rows_in_flight()
                if self._generation != self._seen_generation:
                    # paho re-sends what was in flight at the drop right after CONNACK; newer rows wait for those
                    # so order is kept.
                    if in_flight:
                        self._await_acks()
                        continue
                    self._seen_generation = self._generation
                if self._window - in_flight <= 0:
                    self._await_acks()
                    continue
                read_due, self._pending = self._pending, False
            rows: list[OutboxMessage] = []
            if read_due:
                rows = self._send_waiting()
            if self._degraded and not self._ack_failing:
                self._degraded = False
                self._health.recovered(SENDER)
            if not rows:
                with self._wake:
                    if not self._pending and not self._acks_due() and not self._stop_sender.is_set():
                        self._wake.wait(self._idle_wait_s())
                continue

    def _send_waiting(self) -> list[OutboxMessage]:
        """Read the rows after the send position that fit the window and hand them to paho; what was read."""
        with self._send_lock:
            # Producers may have sent rows directly meanwhile: the room and the position are read again here.
            with self._wake:
                free = self._window - self._rows_in_flight()
            rows = self._outbox.peek(free, after_id=self._sent_upto) if free > 0 else []
            sent = 0
            for row in rows:
                if self._publish_direct(row.topic, row.payload, row.retain, row.id) == _NOT_TAKEN:
                    break
                self._sent_upto = row.id
                sent += 1
        if free <= 0 or sent < len(rows) or (rows and len(rows) == free):
            with self._wake:
                self._pending = True  # more may wait: read again once PUBACKs make room
        return rows

    def _await_acks(self) -> None:
        """Sleep until a PUBACK arrives (or 0.5 s); caller holds the lock."""
        self._sender_awaits_acks = True
        try:
            self._wake.wait(0.5)
        finally:
            self._sender_awaits_acks = False

    # -- paho callbacks (network thread) -----------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker %s:%d refused the connection: %s; check mqtt.username/password, TLS and the broker ACL",
                self._cfg.host, self._cfg.port, reason,
            )
            return
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        with self._wake:
            self._retained[self._topics.status] = STATUS_ONLINE.encode()
            retained = dict(self._retained)
            subs = dict(self._subs)
            self._window = min(self._cfg.max_inflight, receive_max or self._cfg.max_inflight)
            self._generation += 1
            self._pending = True
            self.counters.connects += 1
            self._connected.set()
            self._wake.notify_all()
        log.info("MQTT connected to %s:%d (session present: %s)", self._cfg.host, self._cfg.port,
                 flags.session_present)
        self._publish_direct(self._topics.status, retained.pop(self._topics.status), retain=True)
        for topic, data in retained.items():
            self._publish_direct(topic, data, retain=True)
        # Resubscribing is idempotent in MQTT 5 and covers filters added while offline or a session the broker lost.
        for topic_filter, options in subs.items():
            client.subscribe(topic_filter, options=options)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("cannot reach MQTT broker %s:%d; retrying", self._cfg.host, self._cfg.port)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._wake:
            was_up = self._connected.is_set()
            self._connected.clear()
            if was_up:
                self.counters.disconnects += 1
            self._wake.notify_all()
        if was_up and not self._stopped:
            log.warning("MQTT connection lost (%s); queuing to the outbox and reconnecting", reason)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties
    ) -> None:
        with self._wake:
            flight = self._inflight.pop(mid, None)
            if flight is None:
                # PUBACK raced ahead of _publish_direct recording the mid.
                self._early_acks[mid] = reason
                return
            self._settle(flight, reason)

    # -- subscriptions ------------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, retained: bool = True) -> None:
        """QoS 1 subscription kept across reconnects; `retained=False` never delivers retained messages."""
        handling = SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE if retained else SubscribeOptions.RETAIN_DO_NOT_SEND
        options = SubscribeOptions(qos=QOS, retainHandling=handling)

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                handler(msg.topic, bytes(msg.payload))
            except Exception:
                # An escaping exception would kill paho's network thread and with it the whole link.
                log.exception("handler for %s failed on a message from %s", topic_filter, msg.topic)

        self._client.message_callback_add(topic_filter, on_message)
        with self._wake:
            self._subs[topic_filter] = options
            now = self._connected.is_set()
        if now:
            self._client.subscribe(topic_filter, options=options)

    # -- figures ------------------------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Telemetry figures of the link (names from shared.metrics)."""
        out = {
            "outbox_depth": float(self._outbox.depth()),
            "outbox_dropped": float(self._outbox.dropped),
            "outbox_write_errors": float(self._outbox.write_errors),
            "outbox_snapshots_dropped": float(self._outbox.lane_dropped(SNAPSHOT_LANE)),
        }
        if self._owns_health:
            out.update(self._health.metrics())
        return out

    @property
    def health(self) -> Health:
        """Failures of the sender (shared with the agent when it passed its own)."""
        return self._health

    @property
    def window(self) -> int:
        """Queued messages allowed to await PUBACK at once: mqtt.max_inflight capped by the broker's Receive
        Maximum (MQTT 5 forbids exceeding it, and paho does not enforce it)."""
        with self._wake:
            return self._window

    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        with self._wake:
            return len(self._inflight)
