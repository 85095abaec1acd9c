"""Signed commands from the fleet's key, numbered from the database's issuer sequence (every worker, every
restart), logged before they are published so a reply always finds its command."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.db.commands import CommandRecord
from fleet.db.store import FleetStore
from fleet.publisher import Publisher
from shared.command_signing import Target, build_body, sign_command
from shared.signing import key_id
from shared.topics import DeviceTopics


class CommandSender:
    """Sends one signed command to one device (a command per device: each reply says how that device fared)."""

    def __init__(self, store: FleetStore, publisher: Publisher, key: Ed25519PrivateKey,
                 expires_in_s: float = 300.0) -> None:
        self.store = store
        self.publisher = publisher
        self.key = key
        self.key_id = key_id(key.public_key())
        self.expires_in_s = expires_in_s

    def send(self, device_id: str, name: str, args: Mapping[str, Any] | None = None) -> CommandRecord:
        """Sign, log and publish name(args) for device_id; returns the logged command."""
        topics = DeviceTopics(self.store.fleet, device_id)
        now = self.store.clock()
        seq = self.store.commands.next_seq(self.key_id, now)
        rid = uuid.uuid4().hex[:16]
        body = build_body(name, Target(fleet=self.store.fleet, device=device_id), request_id=rid, seq=seq,
                          now_ms=now, expires_in_s=self.expires_in_s, args=args)
        payload = sign_command(body, self.key)
        rec = CommandRecord(rid, device_id, name, dict(args or {}), seq, now)
        self.store.commands.record(rec)
        self.publisher.publish(topics.cmd(name), payload)
        return rec
