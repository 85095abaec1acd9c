"""The MQTT client's TLS context from config, so a wrong file is named at start rather than at first connect."""

from __future__ import annotations

import ssl

from edge.config import MqttConfig
from edge.errors import LinkError
from shared.tls import TlsFilesError, client_context


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The client TLS context from config, failing early with the file that is wrong."""
    if cfg.tls is None:
        return None
    tls = cfg.tls
    try:
        return client_context(
            tls.ca_file, tls.cert_file, tls.key_file, insecure=tls.insecure, what="MQTT TLS (mqtt.tls)"
        )
    except TlsFilesError as exc:
        raise LinkError(str(exc)) from exc
