"""Which runtime x variant x inference precision serves: the candidates, the hint gate, the pick and the cache key.

Pure: nothing is imported from a runtime and nothing is timed here; edge/runtime_bench.py does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.backends.base import Hardware
from edge.backends.capabilities import F32
from shared.manifest import Variant
from shared.payloads import BenchmarkCandidate, BenchmarkResult

# Top-1 agreement is a ratio of small counts; 99 of 100 must pass a 0.99 gate.
_SLACK = 1e-9
# Flags that change which kernels a runtime picks; the rest of /proc/cpuinfo's list does not move a latency.
FINGERPRINT_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "fphp", "sve", "i8mm",
    "bf16",
})


@dataclass(frozen=True)
class ChoiceSettings:
    """How the choice is made: by measurement or by preference order, and how strict the hint gate is."""

    measure: bool = False
    hint_min_agreement: float = 0.99
    runs: int = 30
    warmup: int = 3
    budget_s: float = 1.0
    forced_backend: str | None = None  # a runtime the config names: only it is a candidate while it is usable
    # The agent batches several streams: batch sizes are timed with the choice (one source never batches).
    batch_sizes: bool = False


@dataclass(frozen=True)
class Offer:
    """What one runtime offers on this device: which variants it runs and which inference hints it applies."""

    backend: str
    device: str
    hints: tuple[str, ...]
    runs: Callable[[Variant], bool]


@dataclass(frozen=True)
class Candidate:
    """One thing that could serve: a runtime, a variant file and an inference precision hint."""

    backend: str
    device: str
    variant: Variant
    hint: str

    @property
    def id(self) -> str:
        """Stable identity, as the cache stores it."""
        return f"{self.backend}:{self.device}:{self.variant.file}:{self.hint}"

    @property
    def where(self) -> str:
        """Runtime, hint and device, to follow a reason that starts with the precision."""
        return f"{self.backend}, {self.hint} on {self.device}"

    @property
    def label(self) -> str:
        """For log lines and reasons."""
        return f"{self.backend} {self.variant.precision} ({self.variant.file}, {self.hint} on {self.device})"


@dataclass
class Outcome:
    """What happened to one candidate."""

    candidate: Candidate
    p50_ms: float | None = None
    p99_ms: float | None = None
    agreement: float | None = None
    rejected: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def candidates(variants: Sequence[Variant], offers: Sequence[Offer], *, measure: bool) -> list[Candidate]:
    """Every (runtime, variant, hint) to try, preferred first: variant order, then runtime order, then f32 first.

    Without measurement only each runtime's first hint is tried (f32 unless the config forces one): a reduced
    inference precision is chosen only when it proves faster.
    """
    out: list[Candidate] = []
    for v in variants:
        for offer in offers:
            if not offer.runs(v):
                continue
            hints = offer.hints if measure else offer.hints[:1]
            out += [Candidate(offer.backend, offer.device, v, h) for h in hints]
    return out


def agreement(top1: np.ndarray, reference: np.ndarray) -> float:
    """Share of samples whose top-1 class equals the reference's."""
    if top1.shape != reference.shape or top1.size == 0:
        raise ValueError(f"top-1 of shape {top1.shape} cannot be compared with {reference.shape}")
    return float(np.count_nonzero(top1 == reference)) / top1.size


def hint_rejection(candidate: Candidate, agreed: float, min_agreement: float, metric: str = "top-1") -> str | None:
    """Why a bf16/f16 hint is refused (too little agreement with FP32 in the task's metric), or None; f32 never is."""
    if candidate.hint == F32 or agreed >= min_agreement - _SLACK:
        return None
    if metric == "top-1":
        return (
            f"top-1 agrees with FP32 on {agreed:.1%} of the golden samples; the {candidate.hint} hint needs at least "
            f"{min_agreement:.1%}"
        )
    return (
        f"{metric} against FP32 on the golden samples is {agreed:.1%}; the {candidate.hint} hint needs at least "
        f"{min_agreement:.1%}"
    )


def pick(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The fastest passing candidate (ties: the preferred, earlier one); unmeasured: the first that passed."""
    passed = [o for o in outcomes if o.rejected is None]
    timed = [o for o in passed if o.p50_ms is not None]
    if timed:
        return min(timed, key=lambda o: o.p50_ms if o.p50_ms is not None else float("inf"))
    return passed[0] if passed else None


def hardware_fingerprint(hw: Hardware, cpu_model: str | None) -> str:
    """What the figures depend on: CPU model and its kernel-relevant flags, GPU, compute capability, TensorRT."""
    doc = {
        "cpu": cpu_model or "unknown",
        "flags": sorted(hw.cpu_features & FINGERPRINT_FLAGS),
        "machine": hw.extra.get("machine", ""),
        "gpu": hw.gpu_name,
        "cc": hw.compute_capability,
        "tensorrt": hw.tensorrt_version,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def cache_key(
    package_sha256: str, hardware: str, runtimes: Mapping[str, str], settings: Mapping[str, object]
) -> str:
    """One key per (package, hardware, runtime versions, choice settings): any change measures again."""
    doc = {"package": package_sha256, "hardware": hardware, "runtimes": dict(runtimes), "settings": settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached_pick(result: BenchmarkResult, offered: Sequence[Candidate]) -> Candidate | None:
    """The cached winner among today's candidates (None when it is no longer offered: measure again)."""
    chosen = result.chosen
    if chosen is None:
        return None
    return next(
        (
            c
            for c in offered
            if (c.backend, c.device, c.variant.file, c.hint)
            == (chosen.backend, chosen.device, chosen.variant, chosen.inference_precision)
        ),
        None,
    )


def _entry(o: Outcome, chosen: Outcome | None) -> BenchmarkCandidate:
    c = o.candidate
    status = "rejected" if o.rejected is not None else ("chosen" if o is chosen else "passed")
    return BenchmarkCandidate(
        backend=c.backend,
        device=c.device,
        variant=c.variant.file,
        precision=c.variant.precision,
        inference_precision=c.hint,
        status=status,
        p50_ms=o.p50_ms,
        p99_ms=o.p99_ms,
        agreement=o.agreement,
        reason=o.rejected,
    )


def result_of(
    outcomes: Sequence[Outcome],
    chosen: Outcome | None,
    *,
    model: str,
    version: int,
    package_sha256: str,
    hardware: str,
    runtimes: Mapping[str, str],
    key: str,
    measured: bool,
    now_ms: int,
) -> BenchmarkResult:
    """The result object the log, the state payload, the retained topic and the cache share."""
    entries = [_entry(o, chosen) for o in outcomes]
    return BenchmarkResult(
        model=model,
        version=version,
        package_sha256=package_sha256,
        hardware=hardware,
        runtimes=dict(runtimes),
        cache_key=key,
        measured=measured,
        measured_at=now_ms,
        chosen=next((e for e, o in zip(entries, outcomes, strict=True) if o is chosen), None),
        candidates=entries,
    )


def summary(result: BenchmarkResult) -> str:
    """One log line: what serves and every candidate's p50 or rejection."""
    parts = []
    for c in result.candidates:
        head = f"{c.backend}/{c.precision}/{c.inference_precision}"
        if c.status == "rejected":
            parts.append(f"{head} rejected")
        else:
            mark = "*" if c.status == "chosen" else ""
            parts.append(f"{mark}{head} " + (f"{c.p50_ms:.3f} ms" if c.p50_ms is not None else "passed"))
    won = result.chosen
    head = f"serving {won.backend} {won.precision} ({won.inference_precision})" if won else "nothing passed"
    how = "cached" if result.cached else ("measured" if result.measured else "by preference")
    return f"runtime choice for {result.model} v{result.version} ({how}): {head}; " + ", ".join(parts)
