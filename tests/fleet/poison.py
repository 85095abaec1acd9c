"""What a hostile device sends: honest payloads for the other devices, and each poison the red-team runs found
(issues 14 and 19), as raw JSON on the device's own topics."""

from __future__ import annotations

import json
import time
from typing import Any

from shared.payloads import StatePayload, TelemetryPayload

BIG = "9" * 401


def now_ms() -> int:
    return int(time.time() * 1000)


def state_doc(device: str, boot: str = "boot-a", ts: int | None = None, **over: Any) -> dict[str, Any]:
    """An honest state payload as a dict (an agent's), with fields replaced by `over`."""
    doc = StatePayload(
        device_id=device, boot_id=boot, seq=0, ts=ts if ts is not None else now_ms(), agent_version="0.1.0",
        model={"name": "tiny", "version": 1, "variant": "model.fp32.onnx", "backend": "onnxruntime"},
        hardware={"cpu_features": ["avx2"], "gpu": None, "runtime_devices": ["cpu"]}, config_digest="d1",
        groups=["north"], telemetry_interval_s=0.5,
    ).model_dump(mode="json")
    doc.update(over)
    return doc


def telemetry_doc(device: str, seq: int, boot: str = "boot-a", **figures: Any) -> dict[str, Any]:
    """An honest telemetry payload as a dict."""
    doc = TelemetryPayload(device_id=device, boot_id=boot, seq=seq, ts=now_ms(), fps=10.0, frames=float(seq),
                           model_version=1.0, class_counts={"cat": 3}).model_dump(mode="json", exclude_none=True)
    doc.update(figures)
    return doc


def raw(doc: dict[str, Any], **tokens: str) -> bytes:
    """JSON of doc with the values of `tokens` keys written verbatim (Infinity, NaN, 401 digits, 1e400)."""
    marked = {**doc, **{k: f"@@{k}@@" for k in tokens}}
    text = json.dumps(marked)
    for k, token in tokens.items():
        text = text.replace(f'"@@{k}@@"', token)
    return text.encode()


def telemetry_poisons(device: str) -> list[tuple[str, bytes]]:
    """(what, payload) for each poisoned telemetry message of the issues."""
    return [
        ("fps Infinity", raw(telemetry_doc(device, 100), fps="Infinity")),
        ("fps NaN", raw(telemetry_doc(device, 101), fps="NaN")),
        ("fps with 401 digits", raw(telemetry_doc(device, 102), fps=BIG)),
        ("model_version 1e400", raw(telemetry_doc(device, 103), model_version="1e400")),
        ("ts 2**63", raw(telemetry_doc(device, 104), ts=str(2**63))),
        ("seq 2**63", raw(telemetry_doc(device, 105), seq=str(2**63))),
        ("frames -1", raw(telemetry_doc(device, 106), frames="-1")),
        ("class count beyond 64 bits", raw(telemetry_doc(device, 107), class_counts=f'{{"cat": {2**64}}}')),
        ("boot id of 65+ characters", raw({**telemetry_doc(device, 108), "boot_id": "b" * 70})),
    ]


def state_poisons(device: str) -> list[tuple[str, bytes]]:
    """(what, payload) for each poisoned state message of the issues."""
    return [
        ("telemetry_interval_s 1e308", raw(state_doc(device), telemetry_interval_s="1e308")),
        ("state ts 10**20", raw(state_doc(device), ts=str(10**20))),
        ("agent_version of 65+ characters", raw(state_doc(device, agent_version="1" * 65))),
        ("model name of 65+ characters", raw(state_doc(device, model={"name": "m" * 65, "version": 1}))),
        ("model version 1e400", raw(state_doc(device), model='{"name": "tiny", "version": 1e400}')),
        ("hardware NaN", raw(state_doc(device), hardware='{"temp": NaN}')),
        ("degraded markup with a NUL", raw(state_doc(device, degraded={"outbox": "<b>\u0000</b>"}))),
        ("degraded key with a NUL", raw(state_doc(device, degraded={"\u0000<b>": "x"}))),
    ]
