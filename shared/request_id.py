"""Command request ids: the one rule for signed commands (shared.command_signing) and plain ones (shared.payloads),
since a device echoes the id in its reply, log and database: 1-64 characters of UTF-8 text, no control characters."""

from __future__ import annotations

import re
from typing import Final

MAX_REQUEST_ID: Final = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_request_id(v: str) -> str:
    """A request id must travel back in a reply: 1-64 characters of UTF-8 text without control characters."""
    if not 0 < len(v) <= MAX_REQUEST_ID:
        raise ValueError(f"request id must be 1-{MAX_REQUEST_ID} characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape
        raise ValueError("request id is not valid UTF-8 text") from exc
    if _CONTROL.search(v):
        raise ValueError("request id holds control characters")
    return v


def text_request_id(v: object) -> str | None:
    """v when it is a request id a reply can carry (check_request_id), else None (not text, or refused)."""
    if not isinstance(v, str):
        return None
    try:
        return check_request_id(v)
    except ValueError:
        return None
