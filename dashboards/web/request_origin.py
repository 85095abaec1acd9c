"""Where a request came from and whether it came over HTTPS, believing X-Forwarded-* only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RequestOrigin:
    """Reads the peer address, X-Forwarded-For and X-Forwarded-Proto against the configured trusted proxies."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self._trusted: list[Network] = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str:
        """The client's address: the peer, or through trusted proxies the last X-Forwarded-For hop they did not add."""
        address = peer or "unknown"
        if not self._is_trusted(address):
            return address
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            address = hop
            if not self._is_trusted(hop):
                break
        return address[:64]

    def is_https(self, scheme: str, peer: str | None, headers: Mapping[str, str]) -> bool:
        """Served over TLS directly, or a trusted proxy says the client used https."""
        if scheme == "https":
            return True
        if peer is None or not self._is_trusted(peer):
            return False
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
