"""Whether a loaded model's input fits what the manifest promises and what preprocessing produces."""

from __future__ import annotations

from collections.abc import Sequence

from edge.backends.base import LoadedModel
from edge.errors import BackendError
from shared.manifest import Manifest, Preprocess


def _fixed(dim: int | str | None) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def shape_text(shape: Sequence[int | str | None]) -> str:
    """[batch, 1, 28, 28] style, for messages."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def preprocessed_shape(p: Preprocess) -> tuple[int, int, int, int]:
    """The batch-of-one shape the preprocessor hands to the model."""
    h, w = p.resize
    return (1, p.channels, h, w) if p.layout == "NCHW" else (1, h, w, p.channels)


def input_mismatch(actual: Sequence[int | str | None], wanted: Sequence[int | str | None]) -> str | None:
    """Why two shapes cannot describe the same tensor (rank, or a fixed dimension that differs), else None."""
    if len(actual) != len(wanted):
        return f"rank {len(actual)} vs {len(wanted)}"
    for axis, (a, w) in enumerate(zip(actual, wanted, strict=True)):
        fa, fw = _fixed(a), _fixed(w)
        if fa is not None and fw is not None and fa != fw:
            return f"axis {axis} is {fa} vs {fw}"
    return None


def check_model_input(model: LoadedModel, manifest: Manifest) -> None:
    """BackendError unless the model's input has the manifest's name and shape and takes preprocessed frames
    (or, for a sensor model, the window recipe's [1, C, T])."""
    spec = manifest.inputs[0]
    actual = model.input_shape
    if model.input_name != spec.name:
        raise BackendError(f"the model's input is named {model.input_name!r} but the manifest says {spec.name!r}")
    why = input_mismatch(actual, spec.shape)
    if why:
        raise BackendError(
            f"the model's input {spec.name!r} is {shape_text(actual)} but the manifest says "
            f"{shape_text(spec.shape)} ({why})"
        )
    if manifest.window is not None:
        c, t = manifest.window.num_channels, manifest.window.window
        why = input_mismatch(actual, (1, c, t))
        if why:
            raise BackendError(
                f"the model's input {spec.name!r} is {shape_text(actual)} but its window recipe ({c} channels, "
                f"{t} readings) produces {shape_text((1, c, t))} ({why})"
            )
        return
    fed = preprocessed_shape(manifest.preprocess)
    why = input_mismatch(actual, fed)
    if why:
        raise BackendError(
            f"the model's input {spec.name!r} is {shape_text(actual)} but preprocessing "
            f"({manifest.preprocess.layout}, {manifest.preprocess.channel_order}, resize "
            f"{manifest.preprocess.resize[0]}x{manifest.preprocess.resize[1]}) produces {shape_text(fed)} ({why})"
        )
