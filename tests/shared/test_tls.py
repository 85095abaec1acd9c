"""The one TLS context builder: a wrong file is named at start, a key without its certificate is refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shared.tls import TlsFilesError, client_context


def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TlsFilesError, match=r"nope\.pem"):
        client_context(tmp_path / "nope.pem", None, None, what="MQTT TLS")


def test_key_without_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TlsFilesError, match="without its certificate"):
        client_context(None, None, tmp_path / "client.key")


def test_default_context_verifies_and_insecure_only_skips_the_hostname() -> None:
    strict = client_context(None, None, None)
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = client_context(None, None, None, insecure=True)
    assert loose.verify_mode == ssl.CERT_REQUIRED and not loose.check_hostname
