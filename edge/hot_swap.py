"""The model slot the frame loop reads once per frame; a new model is prepared elsewhere and swapped in whole."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge.backends.base import LoadedModel
from edge.backends.input_check import check_model_input
from edge.errors import AgentError
from edge.preprocess import Preprocessor
from edge.sensor.window_prep import WindowPreprocessor
from edge.task_decode import FrameDecoder, Runner, decoder_for
from shared.manifest import Manifest, Variant

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ServingModel:
    """Everything one frame needs from a model version; never changed after install."""

    model: LoadedModel
    # Image models: the image recipe; sensor models (manifest.window): the window recipe.
    preprocessor: Preprocessor | WindowPreprocessor
    labels: tuple[str, ...]
    version: int
    variant: Variant
    manifest: Manifest
    generation: int = 0
    # The manifest's task head for frames, chosen once per model (None: built from the manifest).
    decoder: FrameDecoder = field(default=None, repr=False)  # type: ignore[assignment]
    # Runs one batch as the decoder needs it (the first output, or every output by name); bound once.
    infer: Runner = field(init=False, repr=False)
    # Guarded by the slot's lock: frames using it, and whether a newer model replaced it.
    users: int = field(default=0, repr=False)
    retired: bool = field(default=False, repr=False)
    closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.decoder is None:
            self.decoder = decoder_for(self.manifest)
        self.infer = self.decoder.runner(self.model)


def _input_hw(model: LoadedModel, manifest: Manifest) -> tuple[int, int] | None:
    """The model's fixed (H, W), when its input shape states them."""
    shape = model.input_shape
    if len(shape) != 4:
        return None
    h, w = (shape[2], shape[3]) if manifest.preprocess.layout == "NCHW" else (shape[1], shape[2])
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def prepare(model: LoadedModel, manifest: Manifest, variant: Variant, *, warm_up: bool = True) -> ServingModel:
    """Check the input against the manifest, build the preprocessor and run once; on error the caller closes model."""
    check_model_input(model, manifest)
    pre: Preprocessor | WindowPreprocessor
    if manifest.window is not None:
        pre = WindowPreprocessor(manifest.window)
    else:
        pre = Preprocessor(manifest.preprocess, _input_hw(model, manifest))
    serving = ServingModel(model, pre, tuple(manifest.labels), manifest.version, variant, manifest)
    if warm_up:
        # The first run allocates arenas and picks kernels; paying for it here keeps it out of a frame.
        serving.decoder.check(serving.infer(np.zeros(pre.output_shape, dtype=np.float32)), variant.file)
    return serving


class ModelSlot:
    """Holds the served model; install() is a single reference assignment under a lock that acquire() shares."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ServingModel | None = None
        self._generation = 0
        self._seen_generation = 0
        self.swaps = 0
        self.last_swap_at: float | None = None
        self.last_swap_frame: int | None = None

    @property
    def current(self) -> ServingModel | None:
        """The installed model (for status reports; frames use acquire/release)."""
        return self._current

    def metrics(self) -> dict[str, float]:
        """model_version for telemetry (0 while none is served)."""
        current = self._current
        return {"model_version": float(current.version if current else 0)}

    def swap(self, model: LoadedModel, manifest: Manifest, variant: Variant) -> ServingModel:
        """prepare() then install(); call it from the sync thread, never the frame thread."""
        serving = prepare(model, manifest, variant)
        self.install(serving)
        return serving

    def install(self, serving: ServingModel) -> None:
        """Make `serving` the model of the next frame; the replaced one closes once its last frame is done."""
        with self._lock:
            if serving.generation:
                raise AgentError(f"model version {serving.version} was already installed once; prepare it anew")
            old = self._current
            self._generation += 1
            serving.generation = self._generation
            self._current = serving
            close_old = False
            if old is not None:
                self.swaps += 1
                self.last_swap_at = time.time()
                self.last_swap_frame = None
                old.retired = True
                close_old = old.users == 0
        if old is None:
            log.info("serving model version %d (%s)", serving.version, serving.variant.file)
        else:
            log.info("swapped model version %d -> %d (%s)", old.version, serving.version, serving.variant.file)
        if old is not None and close_old:
            self._close(old)

    def acquire(self, frame_index: int) -> ServingModel | None:
        """The model for this frame, held until release(); None while no model is installed."""
        with self._lock:
            serving = self._current
            if serving is None:
                return None
            serving.users += 1
            if serving.generation != self._seen_generation:
                if self.swaps and self.last_swap_frame is None:
                    self.last_swap_frame = frame_index
                self._seen_generation = serving.generation
            return serving

    def release(self, serving: ServingModel) -> None:
        """The frame is done with the model; a retired model with no users left is closed off this thread."""
        with self._lock:
            serving.users -= 1
            close = serving.retired and serving.users == 0 and not serving.closed
            if close:
                serving.closed = True
        if close:
            threading.Thread(target=self._close_model, args=(serving,), name="model-close", daemon=True).start()

    def close(self) -> None:
        """Uninstall and close the current model (at shutdown); a frame still using it closes it on release."""
        with self._lock:
            serving = self._current
            self._current = None
            if serving is None:
                return
            serving.retired = True
            close = serving.users == 0 and not serving.closed
        if close:
            self._close(serving)

    def _close(self, serving: ServingModel) -> None:
        with self._lock:
            if serving.closed:
                return
            serving.closed = True
        self._close_model(serving)

    @staticmethod
    def _close_model(serving: ServingModel) -> None:
        try:
            serving.model.close()
        except AgentError as exc:
            log.warning("closing model version %d failed: %s", serving.version, exc)
