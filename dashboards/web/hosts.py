"""Which Host headers the app answers, and redirects that never point at a host a request made up."""

from __future__ import annotations

from urllib.parse import urlsplit


def host_name(header: str | None) -> str:
    """The lower-case host of a Host header without its port ('' when missing or malformed)."""
    if not header:
        return ""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header


def host_allowed(header: str | None, allowed: list[str]) -> bool:
    """Whether a Host header names one of the allowed hosts ('*.example.com' matches subdomains, '*' anything)."""
    name = host_name(header)
    if not name:
        return False
    for pattern in allowed:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def relative_location(location: str) -> str:
    """An absolute redirect target as a path on this host, so a Location never names another host."""
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        target = location
    else:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # "//evil.example" and "/\\evil.example" are read by browsers as another host: keep one leading slash.
    return "/" + target.lstrip("/\\")
