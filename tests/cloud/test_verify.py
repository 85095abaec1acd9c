"""Verification gates on crafted logits: both sides of every limit, and arrays that cannot be compared."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.verify import accuracy, agreement_gate, fp16_gate, fp32_gate, int8_gate, top1


def _logits(pred: list[int], classes: int = 3, margin: float = 5.0) -> np.ndarray:
    out = np.zeros((len(pred), classes), dtype=np.float32)
    out[np.arange(len(pred)), pred] = margin
    return out


def test_top1_and_accuracy() -> None:
    logits = _logits([0, 2, 1, 1])
    assert top1(logits).tolist() == [0, 2, 1, 1]
    assert accuracy(logits, np.array([0, 2, 0, 1])) == 0.75


def test_fp32_gate_passes_when_logits_match_within_tolerance() -> None:
    ref = _logits([0, 1, 2, 1])
    result = fp32_gate(ref, ref + 5e-5, np.array([0, 1, 2, 1]), max_abs_diff=1e-4)
    assert result.passed
    assert result.agreement == 1.0
    assert result.max_abs_diff == pytest.approx(5e-5, rel=1e-2)
    assert "4/4" in result.reason


def test_fp32_gate_fails_on_logit_drift_even_with_same_top1() -> None:
    ref = _logits([0, 1, 2, 1])
    result = fp32_gate(ref, ref + 3e-3, np.array([0, 1, 2, 1]), max_abs_diff=1e-4)
    assert not result.passed
    assert result.agreement == 1.0
    assert "3.00e-03" in result.reason and "1.0e-04" in result.reason


def test_fp32_gate_fails_on_one_flipped_sample_with_tiny_diff() -> None:
    ref = np.array([[1.0, 1.00001], [3.0, 0.0]], dtype=np.float32)
    onnx = np.array([[1.00002, 1.00001], [3.0, 0.0]], dtype=np.float32)
    result = fp32_gate(ref, onnx, np.array([1, 0]))
    assert not result.passed
    assert "1/2" in result.reason and "need 100%" in result.reason


def test_fp16_gate_at_and_below_the_agreement_limit() -> None:
    labels = np.zeros(200, dtype=np.int64)
    ref = _logits([0] * 200)
    one_flip = _logits([1] + [0] * 199)  # 199/200 = 0.995
    two_flips = _logits([1, 1] + [0] * 198)  # 0.990
    assert fp16_gate(ref, one_flip, labels, 0.995).passed
    failed = fp16_gate(ref, two_flips, labels, 0.995)
    assert not failed.passed
    assert failed.agreement == pytest.approx(0.99)
    assert "0.9900 (198/200) is below 0.9950" in failed.reason


def test_agreement_gate_names_its_precision() -> None:
    ref = _logits([0, 1])
    assert agreement_gate("tensorrt", ref, ref, np.array([0, 1])).precision == "tensorrt"


def test_int8_gate_allows_a_drop_equal_to_the_limit() -> None:
    labels = np.array([0] * 100)
    ref = _logits([0] * 100)
    int8 = _logits([1] + [0] * 99)  # accuracy 0.99: exactly 1.0 point below torch
    result = int8_gate(ref, int8, labels, max_accuracy_drop=0.01)
    assert result.passed
    assert result.accuracy == pytest.approx(0.99)


def test_int8_gate_failure_reason_states_the_figures() -> None:
    labels = np.array([0] * 1000)
    ref = _logits([1] * 26 + [0] * 974)  # torch 0.974
    int8 = _logits([1] * 49 + [0] * 951)  # int8 0.951
    result = int8_gate(ref, int8, labels, max_accuracy_drop=0.01)
    assert not result.passed
    assert result.reason.startswith("accuracy 0.951 is 2.3 points below torch 0.974 (limit 1.0)")


def test_int8_gate_judges_accuracy_not_agreement() -> None:
    labels = np.array([0, 1, 2, 0])
    ref = _logits([0, 1, 2, 1])  # torch 0.75
    int8 = _logits([0, 1, 2, 0])  # differs from torch on one sample but is right: 1.0
    result = int8_gate(ref, int8, labels)
    assert result.passed
    assert result.agreement == 0.75
    assert "25.0 points above" in result.reason


def test_nan_outputs_fail_every_gate_with_a_count() -> None:
    ref = _logits([0, 1, 2])
    bad = ref.copy()
    bad[1, 0] = np.nan
    labels = np.array([0, 1, 2])
    for result in (fp32_gate(ref, bad, labels), fp16_gate(ref, bad, labels), int8_gate(ref, bad, labels)):
        assert not result.passed
        assert "NaN or infinite for 1 of 3 samples" in result.reason


def test_shape_mismatch_fails_instead_of_raising() -> None:
    ref = _logits([0, 1, 2])
    result = int8_gate(ref, ref[:, :2], np.array([0, 1, 2]))
    assert not result.passed
    assert "shape (3, 2)" in result.reason


def test_empty_test_split_fails() -> None:
    empty = np.zeros((0, 3), dtype=np.float32)
    result = fp32_gate(empty, empty, np.zeros(0, dtype=np.int64))
    assert not result.passed
    assert "no test logits" in result.reason
