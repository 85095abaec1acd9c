"""Load, gate and time each runtime candidate on the golden inputs, serve the fastest that passes, cache the result.

The rules (candidates, gates, pick, cache key) are pure and live in edge/runtime_choice.py; this module runs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import LoadedModel
from edge.backends.capabilities import F32
from edge.batch_figures import BATCH_SIZES, has_dynamic_batch, largest_batch_within
from edge.choice_cache import ChoiceCache
from edge.errors import BackendError, PackageRejected
from edge.golden_agreement import GoldenScorer, Top1Scorer, run_golden
from edge.runtime_choice import (
    Candidate,
    ChoiceSettings,
    Outcome,
    cache_key,
    cached_pick,
    hint_rejection,
    pick,
    result_of,
    summary,
)
from edge.variant_bench import latency_samples_ms, p50_p99
from shared.payloads import BenchmarkResult

log = logging.getLogger(__name__)

# Loads one candidate and passes it through the smoke test; PackageRejected or BackendError when it cannot serve.
Loader = Callable[[Candidate], LoadedModel]


class ChosenModel:
    """The served model, saying what it is (backend, device, precisions) and how it was chosen."""

    run: Callable[[np.ndarray], np.ndarray]

    def __init__(self, model: LoadedModel, candidate: Candidate, result: BenchmarkResult) -> None:
        self.model = model
        self.candidate = candidate
        self.input_name = model.input_name
        self.input_shape = model.input_shape
        self.backend = candidate.backend
        self.device = candidate.device
        self.precision: str = candidate.variant.precision
        self.inference_precision = str(getattr(model, "inference_precision", candidate.hint))
        self.result = result
        # Batch size -> median ms, measured with the choice where the batch axis is dynamic (empty: not measured).
        self.batch_ms: dict[int, float] = {}
        self.run = model.run  # bound once: the frame path pays no extra call for the wrapper
        # Every output by name, where the runtime offers it (detectors whose decode is in the graph need it).
        run_outputs = getattr(model, "run_outputs", None)
        if run_outputs is not None:
            self.run_outputs = run_outputs
        # Several frames in flight at once, where the runtime keeps several requests (OpenVINO's async mode).
        run_each = getattr(model, "run_each", None)
        if run_each is not None:
            self.run_each = run_each

    @property
    def in_flight(self) -> int:
        """Frames the runtime runs in flight at once, read from the model (1: one request)."""
        return int(getattr(self.model, "in_flight", 1))

    def largest_batch_within(self, budget_ms: float) -> int | None:
        """The largest batch size measured at install within the budget (1 if none); None: not measured."""
        return largest_batch_within(self.batch_ms, budget_ms)

    def close(self) -> None:
        """Release the runtime's resources."""
        self.model.close()


@dataclass(frozen=True)
class PackageIdentity:
    """What a cached choice is valid for."""

    model: str
    version: int
    package_sha256: str
    hardware: str
    runtimes: Mapping[str, str]


def top1(model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
    """Top-1 class per input, in chunks padded to the model's batch when that batch is fixed."""
    return run_golden(model, inputs).argmax(axis=1)


def evaluate(
    offered: Sequence[Candidate],
    load: Loader,
    inputs: np.ndarray,
    labels: Any,  # the golden reference: top-1 per sample, or a detector's detections
    settings: ChoiceSettings,
    clock: Callable[[], float] = time.perf_counter,
    scorer: GoldenScorer | None = None,
) -> tuple[list[Outcome], tuple[LoadedModel, Outcome] | None]:
    """Every candidate's outcome, and the winner still loaded (the others are closed).

    A bf16/f16 hint is compared with the f32 run of the same runtime and file where there was one (that isolates
    the hint), else with the golden reference (labels: the FP32 model's top-1, or its detections), in the task's
    metric (scorer: top-1 by default, detection F1 for detectors).
    """
    scorer = scorer or Top1Scorer(labels)
    outcomes: list[Outcome] = []
    best: tuple[LoadedModel, Outcome] | None = None
    f32_top1: dict[tuple[str, str], Any] = {}
    sample = np.ascontiguousarray(inputs[:1], dtype=np.float32)
    for c in offered:
        outcome = Outcome(c)
        outcomes.append(outcome)
        try:
            model = load(c)
        except (PackageRejected, BackendError) as exc:
            outcome.rejected = str(exc)
            log.info("runtime candidate %s rejected: %s", c.label, outcome.rejected)
            continue
        try:
            predicted = scorer.predict(model, inputs)
            reference = f32_top1.get((c.backend, c.variant.file), labels)
            outcome.agreement = scorer.agreement(predicted, reference)
            if c.hint == F32:
                f32_top1[(c.backend, c.variant.file)] = predicted
            outcome.rejected = hint_rejection(c, outcome.agreement, scorer.min_agreement(settings.hint_min_agreement),
                                              scorer.metric)
            if outcome.rejected is None and settings.measure:
                times = latency_samples_ms(model, sample, settings.runs, settings.warmup, settings.budget_s, clock)
                outcome.p50_ms, outcome.p99_ms = p50_p99(times)
        except BackendError as exc:
            outcome.rejected = f"failed on the golden inputs: {exc}"
        if outcome.rejected is not None:
            log.info("runtime candidate %s rejected: %s", c.label, outcome.rejected)
            model.close()
            continue
        if outcome.p50_ms is not None:
            log.info("runtime candidate %s: p50 %.3f ms, p99 %.3f ms", c.label, outcome.p50_ms, outcome.p99_ms)
        if best is None or pick([best[1], outcome]) is outcome:
            if best is not None:
                best[0].close()
            best = (model, outcome)
        else:
            model.close()
        if not settings.measure:
            break  # by preference: the first candidate that passes serves
    return outcomes, best


def time_batch_sizes(
    model: LoadedModel,
    sample: np.ndarray,
    settings: ChoiceSettings,
    sizes: Sequence[int] = BATCH_SIZES,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, float]:
    """Median ms of one run at each batch size, where the model's batch axis is dynamic ({} where it is fixed);
    sizes the runtime refuses end the list (the scheduler never batches beyond them)."""
    if not has_dynamic_batch(model.input_shape):
        return {}
    out: dict[int, float] = {}
    for size in sizes:
        batch = np.ascontiguousarray(np.repeat(sample[:1], size, axis=0), dtype=np.float32)
        try:
            times = latency_samples_ms(model, batch, settings.runs, settings.warmup, settings.budget_s, clock)
        except BackendError as exc:
            log.info("batch size %d does not run (%s); batches stop at %d", size, exc, max(out, default=1))
            break
        out[size] = p50_p99(times)[0]
    return out


def with_batch_figures(
    chosen: ChosenModel, inputs: np.ndarray, settings: ChoiceSettings, cache: ChoiceCache | None
) -> ChosenModel:
    """Attach the batch-size figures: the cached ones for this choice, else (where the agent batches streams)
    measured now and cached; an agent serving one source never batches, so nothing is timed for it.

    A choice recorded on another machine is not timed here, but its record carries no batch figures and batch
    latencies are this device's: they are timed on its first load and kept, like a measured choice's (without them
    the multi-stream scheduler would time the model again at every start).
    """
    key = chosen.result.cache_key
    figures = cache.get_batches(key) if cache is not None else {}
    if not figures and settings.measure and settings.batch_sizes and chosen.result.source in ("measured", "recorded"):
        figures = time_batch_sizes(chosen.model, inputs, settings)
        if figures:
            log.info("batch sizes of %s: %s", chosen.candidate.label,
                     ", ".join(f"{size}: {ms:.3f} ms" for size, ms in figures.items()))
            if cache is not None:
                cache.put_batches(key, figures)
    chosen.batch_ms = figures
    return chosen


def settings_doc(settings: ChoiceSettings, offered: Sequence[Candidate]) -> dict[str, object]:
    """The parts of the settings that change the outcome, for the cache key."""
    return {
        "hint_min_agreement": settings.hint_min_agreement,
        "forced": settings.forced_backend,
        "candidates": [c.id for c in offered],
    }


def adopt_recorded(
    recorded: BenchmarkResult,
    offered: Sequence[Candidate],
    load: Loader,
    inputs: np.ndarray,
    labels: Any,  # the golden reference: top-1 per sample, or a detector's detections
    settings: ChoiceSettings,
    key: str,
    scorer: GoldenScorer | None = None,
) -> ChosenModel | None:
    """A choice recorded on an identical target, served without timing once its smoke test and hint gate pass here.

    The hint is compared with the golden labels (the FP32 model's top-1): nothing else runs. None: measure instead.
    """
    winner = cached_pick(recorded, offered)
    if winner is None:
        log.warning("the choice recorded for target %s is not among this device's candidates (a forced runtime, "
                    "variant or hint in config?); measuring here", recorded.target)
        return None
    try:
        model = load(winner)
    except (PackageRejected, BackendError) as exc:
        log.warning("the choice recorded for target %s, %s, fails here (%s); measuring here", recorded.target,
                    winner.label, exc)
        return None
    scorer = scorer or Top1Scorer(labels)
    try:
        agreed = scorer.agreement(scorer.predict(model, inputs), labels)
        why = hint_rejection(winner, agreed, scorer.min_agreement(settings.hint_min_agreement), scorer.metric)
    except BackendError as exc:
        why = f"failed on the golden inputs: {exc}"
    if why is not None:
        model.close()
        log.warning("the choice recorded for target %s, %s, is refused here: %s; measuring here", recorded.target,
                    winner.label, why)
        return None
    result = recorded.model_copy(update={"source": "recorded", "cached": False, "cache_key": key})
    log.info("runtime choice for %s v%d (recorded for target %s, nothing timed here): serving %s", result.model,
             result.version, result.target, winner.label)
    return ChosenModel(model, winner, result)


def choose(
    offered: Sequence[Candidate],
    load: Loader,
    inputs: np.ndarray,
    labels: Any,  # the golden reference: top-1 per sample, or a detector's detections
    settings: ChoiceSettings,
    identity: PackageIdentity,
    cache: ChoiceCache | None = None,
    *,
    remeasure: bool = False,
    recorded: Callable[[], BenchmarkResult | None] | None = None,
    scorer: GoldenScorer | None = None,
) -> ChosenModel:
    """The model to serve; PackageRejected naming every candidate's reason when none passes.

    Where measuring is due: the cached choice, else the choice `recorded` returns (asked only on a cache miss, it
    fetches a record made on an identical target), else every candidate timed here.
    """
    if not offered:
        raise PackageRejected(f"{identity.model} v{identity.version}: no runtime here can run any of its variants")
    key = cache_key(identity.package_sha256, identity.hardware, identity.runtimes, settings_doc(settings, offered))
    if settings.measure and cache is not None and not remeasure:
        cached = cache.get(key)
        winner = cached_pick(cached, offered) if cached is not None else None
        if cached is not None and winner is not None:
            try:
                model = load(winner)
            except (PackageRejected, BackendError) as exc:
                log.warning("cached runtime choice %s no longer loads (%s); measuring again", winner.label, exc)
            else:
                result = cached.model_copy(update={"cached": True})
                log.info("%s", summary(result))
                return with_batch_figures(ChosenModel(model, winner, result), inputs, settings, cache)
    if settings.measure and recorded is not None and not remeasure:
        record = recorded()
        adopted = adopt_recorded(record, offered, load, inputs, labels, settings, key, scorer) if record else None
        if adopted is not None:
            if cache is not None:
                cache.put(adopted.result)
            return with_batch_figures(adopted, inputs, settings, cache)
    outcomes, best = evaluate(offered, load, inputs, labels, settings, scorer=scorer)
    chosen = best[1] if best is not None else None
    result = result_of(
        outcomes,
        chosen,
        model=identity.model,
        version=identity.version,
        package_sha256=identity.package_sha256,
        hardware=identity.hardware,
        runtimes=identity.runtimes,
        key=key,
        measured=settings.measure,
        now_ms=int(time.time() * 1000),
    ).model_copy(update={"source": "measured" if settings.measure else "preference"})
    log.info("%s", summary(result))
    if best is None:
        reasons = "; ".join(f"{o.candidate.variant.precision}: {o.rejected} ({o.candidate.where})" for o in outcomes)
        raise PackageRejected(f"{identity.model} v{identity.version}: no variant passed: {reasons}")
    if settings.measure and cache is not None:
        cache.put(result)
    return with_batch_figures(ChosenModel(best[0], best[1].candidate, result), inputs, settings, cache)


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's marketing name ('model name' on x86, 'Hardware'/'Model' on ARM), part of the hardware fingerprint."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), value.strip())
    # x86 has 'model name' (its 'model' is a number); ARM boards have 'Hardware' or 'Model'.
    return next((fields[k] for k in ("model name", "Hardware", "Model") if k in fields), None)
