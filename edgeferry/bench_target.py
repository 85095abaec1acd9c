"""`edgeferry bench --target`: choose the runtime for a named target once, on that hardware, for its whole fleet.

Run on one device of a fleet of identical ones: the package is downloaded and verified as a device does, every
candidate is measured by the device's own code (edge.model_sync -> edge.runtime_bench), and the result is signed
with the package key beside the version (shared/choice_record.py). The package itself is never rewritten.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.backends.base import Hardware
from edge.backends.factory import backend_chain
from edge.config import AgentConfig
from edge.errors import PackageRejected
from edge.hardware import detect_hardware
from edge.model_sync import ModelSync
from edge.runtime_bench import cpu_model_name
from edge.runtime_choice import FINGERPRINT_FLAGS
from shared.choice_record import ChoiceRecord, record_key, record_signature_key, sign_record, verify_record
from shared.errors import EdgeferryError, SignatureError, StoreNotFoundError
from shared.manifest import latest_key, latest_signature_key, utcnow
from shared.names import check_ident
from shared.object_store import ObjectStore
from shared.pointer import verify_pointer
from shared.signing import key_id, load_private_key
from shared.version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What was written, and the record it replaced (None: the first for this target)."""

    record: ChoiceRecord
    key: str
    key_id: str
    replaced: ChoiceRecord | None


def host_facts(hw: Hardware) -> dict[str, Any]:
    """Readable description of the measuring machine, beside the fingerprint that decides."""
    return {
        "cpu": cpu_model_name(),
        "cpu_flags": sorted(hw.cpu_features & FINGERPRINT_FLAGS),
        "machine": hw.extra.get("machine"),
        "board": hw.extra.get("board"),
        "gpu": hw.gpu_name,
        "compute_capability": hw.compute_capability,
        "tensorrt": hw.tensorrt_version,
    }


def latest_version(store: ObjectStore, name: str, trusted: list[Ed25519PublicKey]) -> int:
    """The version the signed latest.json names."""
    try:
        body = store.get(latest_key(name))
    except StoreNotFoundError as exc:
        raise StoreNotFoundError(f"no published versions of {name!r} in {store.uri}") from exc
    try:
        signature: bytes | None = store.get(latest_signature_key(name))
    except StoreNotFoundError:
        signature = None
    try:
        latest, _ = verify_pointer(body, signature, trusted, allow_unsigned=False)
    except SignatureError as exc:
        raise SignatureError(f"{exc} (--signing-key must be the private key that signed the package)") from exc
    return latest.version


def _previous(store: ObjectStore, name: str, version: int, target: str, trusted: list[Ed25519PublicKey]) -> (
    ChoiceRecord | None
):
    """The record this run replaces, when one is there and still verifies (a broken one is simply replaced)."""
    try:
        body = store.get(record_key(name, version, target))
        signature = store.get(record_signature_key(name, version, target))
    except StoreNotFoundError:
        return None
    try:
        return verify_record(body, signature, trusted)
    except EdgeferryError as exc:
        log.warning("replacing an unusable recorded choice for %s: %s", target, exc)
        return None


def record_choice(
    store: ObjectStore,
    name: str,
    target: str,
    key_path: Path,
    cfg: AgentConfig,
    *,
    version: int | None = None,
    hardware: Hardware | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Recorded:
    """Measure a published version here and store the signed choice for `target`; EdgeferryError on bad input."""
    check_ident(target, "target name")
    check_ident(name, "model name")
    private = load_private_key(key_path)
    # Only the package's own signer may record for it: devices that trust the package then trust the record.
    trusted = [private.public_key()]
    if version is None:
        version = latest_version(store, name, trusted)
    hw = hardware or detect_hardware()
    chain = backend_chain(hw, cfg.backend, benchmark_on_install=True)
    with tempfile.TemporaryDirectory(prefix="edgeferry-bench-") as tmp:
        sync_cfg = cfg.sync.model_copy(update={
            "model": name, "cache_dir": Path(tmp), "target": None, "pinned_version": None,
            "benchmark_on_install": True,
        })
        sync = ModelSync(sync_cfg, store, trusted, chain, hw)
        try:
            installed = sync.install(version)
        except PackageRejected as exc:
            if isinstance(exc.__cause__, SignatureError):
                raise PackageRejected(f"{exc} (--signing-key must be the private key that signed the package)") from exc
            raise
        chosen, _ = sync.load(installed, remeasure=True)
        chosen.close()
    result = chosen.result.model_copy(update={"target": target, "source": "measured", "cached": False})
    record = ChoiceRecord(target=target, recorded_at=now(), recorded_by=__version__, host=host_facts(hw),
                          result=result)
    replaced = _previous(store, name, version, target, trusted)
    body, signature = sign_record(record, private)
    # Signature first: a device reading in between finds no record yet (and measures) rather than an unsigned one.
    store.put(record_signature_key(name, version, target), signature)
    store.put(record_key(name, version, target), body)
    return Recorded(record, record_key(name, version, target), key_id(private.public_key()), replaced)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def report(done: Recorded) -> str:
    """What the operator reads: every candidate's figures, the choice, where it was written."""
    r = done.record.result
    lines = [f"{r.model} v{r.version} on target {done.record.target} (hardware {r.hardware}; "
             + ", ".join(f"{k} {v}" for k, v in sorted(r.runtimes.items())) + ")"]
    for c in r.candidates:
        head = f"  {'*' if c.status == 'chosen' else ' '} {c.backend:<12} {c.precision:<6} {c.inference_precision:<5}"
        if c.status == "rejected":
            lines.append(f"{head} rejected: {c.reason}")
        else:
            lines.append(f"{head} p50 {_ms(c.p50_ms)}  p99 {_ms(c.p99_ms)}")
    chosen = r.chosen
    if chosen is not None:
        lines.append(f"chosen: {chosen.backend} {chosen.precision} ({chosen.inference_precision} on {chosen.device})")
    was = "" if done.replaced is None else f", replacing the record of {done.replaced.recorded_at:%Y-%m-%d %H:%M} UTC"
    lines.append(f"recorded {done.key} (+ .sig, signed by key {done.key_id}){was}")
    lines.append(f"devices with sync.target: {done.record.target} and this fingerprint serve it without measuring")
    return "\n".join(lines)
