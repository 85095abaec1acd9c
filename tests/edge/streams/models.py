"""A small ONNX classifier whose top-1 really depends on the frame (so a mixed-up batch shows), and test sources."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.errors import SourceError
from edge.sources.base import Frame
from edge.sources.synthetic import SyntheticSource

CLASSES = 10


def write_sensitive_classifier(path: Path, *, batch: int | str = "batch", seed: int = 7) -> Path:
    """logits = Flatten(x) @ W with W ~ N(0, 0.05): every pixel moves every score, no class wins by a bias."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((28 * 28, CLASSES)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "sensitive",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class SwitchableSource(SyntheticSource):
    """A synthetic camera that can be unplugged (reads and opens fail) and plugged back in."""

    def __init__(self, pattern: str = "digits", fps: float | None = 50.0) -> None:
        super().__init__(pattern, height=28, width=28, fps=fps)  # type: ignore[arg-type]
        self.unplugged = threading.Event()
        self.opens = 0

    def open(self) -> None:
        if self.unplugged.is_set():
            raise SourceError("camera is unplugged")
        self.opens += 1
        super().open()

    def read(self) -> Frame | None:
        if self.unplugged.is_set():
            raise SourceError("camera stopped answering")
        return super().read()


class HangingSource(SyntheticSource):
    """A camera whose first connection hangs in read() until interrupted; reconnected, it delivers."""

    def __init__(self) -> None:
        super().__init__("bars", height=28, width=28, fps=50.0)
        self.opens = 0
        self._released = threading.Event()

    def open(self) -> None:
        self.opens += 1
        super().open()

    def read(self) -> Frame | None:
        if self.opens == 1:
            self._released.wait()
            return None
        return super().read()

    def interrupt(self) -> None:
        self._released.set()
        super().interrupt()
