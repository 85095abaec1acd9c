"""One telemetry message parsed once for every web-app buffer that reads it (figures, a detector's zone counts)."""

from __future__ import annotations

from pydantic import ValidationError

from dashboards.errors import Refused
from shared.payloads import TelemetryPayload


def parse_telemetry(payload: bytes) -> TelemetryPayload:
    """The validated report; Refused (one line, nothing kept) when it is malformed."""
    try:
        return TelemetryPayload.model_validate_json(payload)
    except ValidationError as exc:
        raise Refused("telemetry", f"not a telemetry payload ({exc.error_count()} errors)") from exc
    except (ValueError, RecursionError) as exc:  # too deep or too large for the parser
        raise Refused("telemetry", f"unreadable ({type(exc).__name__})") from exc
