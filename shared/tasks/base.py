"""What every task head offers, and the registry that picks one from a manifest's task and output format."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from shared.errors import TaskContractError
from shared.preprocessing import FrameGeometry
from shared.task_contract import DetectionThresholds

if TYPE_CHECKING:
    from shared.manifest import Manifest

# Outputs as a runtime returns them: by tensor name, or a list in the manifest's output order.
Outputs = Mapping[str, np.ndarray] | Sequence[np.ndarray]
# One geometry for every image of the batch, one per image, or None: results stay in model-input pixels.
Geometry = FrameGeometry | Sequence[FrameGeometry | None] | None

R = TypeVar("R")


@dataclass(frozen=True)
class QualityFigures:
    """Figures a rollout gate reads over a window of results, in the task's own terms."""

    frames: int
    mean_score: float | None  # mean top-1 probability, or mean detection score; None without any
    objects_per_frame: float | None  # detections per frame; None for tasks without objects
    class_counts: dict[str, int] = field(default_factory=dict)  # top-1 per frame, or detections per class


@dataclass(frozen=True)
class HeadContext:
    """What a head needs from the manifest besides its contract: labels, output order and input size."""

    labels: tuple[str, ...]
    output_names: tuple[str, ...]
    input_hw: tuple[int, int]


class TaskHead(Protocol[R]):
    """Turns one batch of model outputs into one result per image, the same way on the cloud and on devices."""

    task: str
    format: str
    context: HeadContext

    def decode(self, outputs: Outputs, geometry: Geometry = None) -> list[R]:
        """One result per image of the batch; TaskContractError when the outputs do not fit the contract."""
        ...

    def quality(self, results: Sequence[R]) -> QualityFigures:
        """Gate figures over results this head decoded."""
        ...


HeadFactory = Callable[[Any, HeadContext, DetectionThresholds | None], Any]
_REGISTRY: dict[tuple[str, str], HeadFactory] = {}


def register_head(task: str, fmt: str) -> Callable[[HeadFactory], HeadFactory]:
    """Class decorator: the head for (task, format); a second head for one key is a programming error."""

    def add(factory: HeadFactory) -> HeadFactory:
        if (task, fmt) in _REGISTRY:
            raise RuntimeError(f"a task head for {task}/{fmt} is already registered")
        _REGISTRY[(task, fmt)] = factory
        return factory

    return add


def registered_heads() -> list[tuple[str, str]]:
    """Every (task, format) this build can decode."""
    return sorted(_REGISTRY)


def head_factory(task: str, fmt: str) -> HeadFactory:
    """The factory registered for (task, format); TaskContractError naming what is known otherwise."""
    try:
        return _REGISTRY[(task, fmt)]
    except KeyError:
        known = ", ".join(f"{t}/{f}" for t, f in registered_heads())
        raise TaskContractError(
            f"no task head for task {task!r} with output format {fmt!r}; this build knows {known}"
        ) from None


def make_head(
    spec: Any, context: HeadContext, thresholds: DetectionThresholds | None = None
) -> TaskHead[Any]:
    """The head for a contract (shared.task_contract); thresholds override a detector's manifest defaults."""
    task, fmt = getattr(spec, "task", None), getattr(spec, "format", None)
    if not isinstance(task, str) or not isinstance(fmt, str):
        raise TaskContractError(f"{type(spec).__name__} is not an output contract (it has no task and format)")
    return head_factory(task, fmt)(spec, context, thresholds)


def head_for(manifest: Manifest, thresholds: DetectionThresholds | None = None) -> TaskHead[Any]:
    """The head a manifest's task and output contract call for, with optional device threshold overrides."""
    context = HeadContext(
        labels=tuple(manifest.labels),
        output_names=tuple(o.name for o in manifest.outputs),
        # A sensor model has no image: (channels, window length) of its window recipe stand in.
        input_hw=(int(manifest.preprocess.resize[0]), int(manifest.preprocess.resize[1])) if manifest.window is None
        else (manifest.window.num_channels, manifest.window.window),
    )
    return make_head(manifest.head, context, thresholds)


def pick_output(outputs: Outputs, name: str | None, context: HeadContext) -> np.ndarray:
    """One output by name (None: the first), from a name mapping or a list in the manifest's output order."""
    if isinstance(outputs, Mapping):
        if name is None:
            if not outputs:
                raise TaskContractError("the model returned no outputs")
            key = context.output_names[0] if context.output_names and context.output_names[0] in outputs else None
            return np.asarray(outputs[key] if key is not None else next(iter(outputs.values())))
        if name not in outputs:
            raise TaskContractError(f"the model returned no output {name!r} (it returned {sorted(outputs)})")
        return np.asarray(outputs[name])
    seq = list(outputs)
    index = 0 if name is None else _index(name, context)
    if index >= len(seq):
        raise TaskContractError(f"the model returned {len(seq)} outputs; output {name or 0!r} is missing")
    return np.asarray(seq[index])


def geometries(geometry: Geometry, batch: int) -> list[FrameGeometry | None]:
    """One geometry (or None) per image of a batch."""
    if geometry is None or isinstance(geometry, FrameGeometry):
        return [geometry] * batch
    out = list(geometry)
    if len(out) != batch:
        raise TaskContractError(f"{len(out)} frame geometries for a batch of {batch}")
    return out


def _index(name: str, context: HeadContext) -> int:
    try:
        return context.output_names.index(name)
    except ValueError:
        known = list(context.output_names)
        raise TaskContractError(f"output {name!r} is not among the model's outputs {known}") from None
