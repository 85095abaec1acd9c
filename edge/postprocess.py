"""Logits to what a user sees, on the device: shared.tasks' classification head with the device's error type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.errors import BackendError
from shared.errors import TaskContractError
from shared.tasks.classification import Prediction, classify, softmax

__all__ = ["Prediction", "postprocess", "softmax"]


def postprocess(logits: np.ndarray, labels: Sequence[str], k: int = 3) -> Prediction:
    """The prediction for a batch of one; BackendError when the output does not match the labels."""
    try:
        return classify(logits, labels, k)
    except TaskContractError as exc:
        raise BackendError(str(exc)) from exc
