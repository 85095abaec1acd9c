"""Softmax, label, score and top-k as a user reads them from an event."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import BackendError
from edge.postprocess import postprocess, softmax

LABELS = [f"class{i}" for i in range(5)]


def test_softmax_is_stable_for_huge_logits() -> None:
    p = softmax(np.array([1000.0, 1001.0, -1000.0]))
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)
    assert p[1] / p[0] == pytest.approx(np.e)
    batch = softmax(np.array([[0.0, 0.0], [5.0, 5.0]]))
    np.testing.assert_allclose(batch, 0.5)


def test_prediction_has_label_score_and_sorted_top_k() -> None:
    logits = np.array([[0.1, 2.0, -1.0, 3.0, 0.5]], dtype=np.float32)
    pred = postprocess(logits, LABELS, k=3)
    probs = softmax(logits[0])
    assert (pred.index, pred.label) == (3, "class3")
    assert pred.score == pytest.approx(probs[3])
    assert [name for name, _ in pred.top_k] == ["class3", "class1", "class4"]
    assert [s for _, s in pred.top_k] == pytest.approx([probs[3], probs[1], probs[4]])


def test_ties_go_to_the_lower_index_like_argmax_and_k_is_clipped() -> None:
    pred = postprocess(np.array([1.0, 4.0, 4.0, 0.0, 4.0]), LABELS, k=10)
    assert pred.label == "class1"
    assert [n for n, _ in pred.top_k] == ["class1", "class2", "class4", "class0", "class3"]


def test_outputs_that_do_not_fit_the_labels_are_errors() -> None:
    with pytest.raises(BackendError, match="has 4 values but the manifest lists 5 labels"):
        postprocess(np.zeros((1, 4)), LABELS)
    with pytest.raises(BackendError, match="NaN"):
        postprocess(np.array([0.0, np.nan, 0.0, 0.0, 0.0]), LABELS)
