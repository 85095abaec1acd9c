"""The client TLS context every MQTT client of ours builds (agent, operator CLI, control plane), failing at start
with the file that is wrong rather than at the first connect."""

from __future__ import annotations

import ssl
from pathlib import Path

from shared.errors import ConfigError


class TlsFilesError(ConfigError):
    """A CA, certificate or key file for TLS cannot be loaded, or a key is given without its certificate."""


def client_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None, *, insecure: bool = False, what: str = "TLS"
) -> ssl.SSLContext:
    """A verifying client context (system CAs unless ca_file), with a client certificate for mutual TLS."""
    if key_file is not None and cert_file is None:
        raise TlsFilesError(f"{what}: a key file is set without its certificate file; set both for mutual TLS")
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        files = f"ca={ca_file}, cert={cert_file}, key={key_file}"
        raise TlsFilesError(f"cannot load {what} files ({files}): {exc}") from exc
    if insecure:
        ctx.check_hostname = False
    return ctx
