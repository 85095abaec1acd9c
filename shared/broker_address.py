"""The broker address as every command spells it: --broker HOST[:PORT] ([v6]:PORT for IPv6)."""

from __future__ import annotations


def parse_broker(text: str, flag: str = "--broker") -> tuple[str, int | None]:
    """(host, port or None when left out); ValueError in one line a user can act on otherwise."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or (port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536)):
        raise ValueError(f"{flag} must be HOST[:PORT] with a port from 1 to 65535, got {text!r}")
    return host, int(port_text) if port_text else None
