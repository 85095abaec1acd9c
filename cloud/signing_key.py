"""Which key signs a package: the configured one, or a development pair created on first use."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.config import PublishConfig
from shared.signing import generate_keypair, load_private_key

log = logging.getLogger(__name__)
DEV_KEY_NAME = "edgeferry.key"


def resolve_signing_key(cfg: PublishConfig) -> tuple[Ed25519PrivateKey, Path]:
    """Load the configured key (error if missing); with none configured, use or create the dev pair."""
    if cfg.signing_key is not None:
        return load_private_key(cfg.signing_key), cfg.signing_key
    path = cfg.dev_key_dir / DEV_KEY_NAME
    if not path.exists():
        pair = generate_keypair(path)
        log.warning(
            "no signing key configured: created a DEVELOPMENT key pair %s / %s; "
            "devices must trust %s. Use 'edgeferry keygen' and publish.signing_key in production.",
            pair.private, pair.public, pair.public,
        )
    else:
        log.info("signing with the development key %s (no publish.signing_key configured)", path)
    return load_private_key(path), path
