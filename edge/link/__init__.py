"""The agent's broker link: one protocol (`Link`), the MQTT implementation with its durable outbox, a null link."""

from edge.errors import LinkError, OutboxError
from edge.link.base import Link, MessageHandler, check_topic, encode_json
from edge.link.mqtt import MqttLink
from edge.link.null import NullLink
from edge.link.outbox import Outbox

__all__ = [
    "Link", "LinkError", "MessageHandler", "MqttLink", "NullLink", "Outbox", "OutboxError", "check_topic",
    "encode_json",
]
