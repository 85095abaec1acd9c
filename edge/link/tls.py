"""The MQTT client's TLS context from config, so a wrong file is named at start rather than at first connect."""

from __future__ import annotations

import ssl

from edge.config import MqttConfig
from edge.errors import LinkError


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The client TLS context from config, failing early with the file that is wrong."""
    if cfg.tls is None:
        return None
    tls = cfg.tls
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LinkError(
            f"cannot load MQTT TLS files (ca={tls.ca_file}, cert={tls.cert_file}, key={tls.key_file}): {exc}"
        ) from exc
    if tls.key_file and not tls.cert_file:
        raise LinkError("mqtt.tls.key_file is set without mqtt.tls.cert_file; set both for mutual TLS")
    if tls.insecure:
        ctx.check_hostname = False
    return ctx
