"""The web app's one parser of a device's message (telemetry, object events, snapshots): validated against its wire
contract and checked to name the device of its topic, so every buffer that reads it can trust both."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from dashboards.errors import Refused
from shared.payloads import Envelope, TelemetryPayload

P = TypeVar("P", bound=Envelope)


def parse_message(model: type[P], device_id: str, payload: bytes, kind: str) -> P:
    """The validated message of device_id's topic; Refused (one line, nothing kept) when it is malformed or names
    another device."""
    try:
        doc = model.model_validate_json(payload)
    except ValidationError as exc:
        raise Refused(kind, f"not a {kind} payload ({exc.error_count()} errors)") from exc
    except (ValueError, RecursionError) as exc:  # too deep or too large for the parser
        raise Refused(kind, f"unreadable ({type(exc).__name__})") from exc
    if doc.device_id != device_id:
        raise Refused(kind, f"sent on {device_id}'s topic but names device {doc.device_id!r}")
    return doc


def parse_telemetry(payload: bytes, device_id: str) -> TelemetryPayload:
    """One telemetry report, parsed once for every buffer that reads it (figures, a detector's zone counts)."""
    return parse_message(TelemetryPayload, device_id, payload, "telemetry")
