"""The classification head is today's device postprocessing, now shared with the cloud's gates."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import BackendError
from edge.postprocess import postprocess
from shared.errors import TaskContractError
from shared.task_contract import ClassificationHeadSpec
from shared.tasks import HeadContext, Prediction, head_for, make_head
from tests.shared.manifest_factory import make_manifest

LABELS = tuple(f"class{i}" for i in range(5))
CTX = HeadContext(labels=LABELS, output_names=("logits",), input_hw=(8, 8))


def test_the_head_gives_what_the_device_always_gave() -> None:
    logits = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    head = make_head(ClassificationHeadSpec(), CTX)
    assert head.decode({"logits": logits}) == [postprocess(row, LABELS) for row in logits]


def test_a_schema_1_manifest_gets_the_logits_head() -> None:
    head = head_for(make_manifest())
    assert (head.task, head.format) == ("classification", "logits")
    (pred,) = head.decode([np.eye(10, dtype=np.float32)[3:4] * 10])
    assert (pred.index, pred.label) == (3, "3")


def test_probabilities_are_taken_as_they_are() -> None:
    probs = np.array([[0.1, 0.2, 0.6, 0.05, 0.05]], dtype=np.float32)
    (pred,) = make_head(ClassificationHeadSpec(format="probabilities", top_k=2), CTX).decode([probs])
    assert pred.label == "class2" and pred.score == pytest.approx(0.6)
    assert [n for n, _ in pred.top_k] == ["class2", "class1"]


def test_outputs_that_do_not_fit_the_labels_are_contract_errors_and_backend_errors_on_the_device() -> None:
    with pytest.raises(TaskContractError, match="has 4 values but the manifest lists 5 labels"):
        make_head(ClassificationHeadSpec(), CTX).decode([np.zeros((1, 4))])
    with pytest.raises(BackendError, match="NaN"):
        postprocess(np.array([np.nan] * 5), LABELS)


def test_quality_figures_are_the_mean_top1_score_and_class_mix() -> None:
    head = make_head(ClassificationHeadSpec(), CTX)
    preds = [Prediction(0, "class0", 0.9, ()), Prediction(2, "class2", 0.5, ()), Prediction(0, "class0", 0.7, ())]
    q = head.quality(preds)
    assert (q.frames, q.objects_per_frame, q.class_counts) == (3, None, {"class0": 2, "class2": 1})
    assert q.mean_score == pytest.approx(0.7)
