"""Manifest schema 2: every package names its task and output contract, and schema 1 packages still load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ManifestError
from shared.manifest import SCHEMA_VERSION, Latest, Manifest, parse_latest, parse_manifest, utcnow
from shared.package import verify_manifest
from shared.signing import sign
from shared.task_contract import ClassificationHeadSpec, YoloHeadSpec
from tests.edge.package_factory import build_package, new_keypair
from tests.shared.manifest_factory import SHA, detection_manifest_dict, make_detection_manifest, manifest_dict

# Written by the trainer-side package factory before schema 2 (tests/edge/package_factory.py at schema 1).
V1_MANIFEST = Path(__file__).parent / "data" / "manifest_v1.json"


def _parse(d: dict[str, Any]) -> Manifest:
    return parse_manifest(json.dumps(d).encode())


def test_a_schema_1_package_verifies_as_before_and_loads_as_a_logits_classifier() -> None:
    body = V1_MANIFEST.read_bytes()
    assert json.loads(body)["schema_version"] == 1
    keys = new_keypair()
    manifest, _ = verify_manifest(body, sign(body, keys.private), [keys.public])
    assert manifest.schema_version == SCHEMA_VERSION == 2
    assert manifest.task == "classification"
    assert manifest.head == ClassificationHeadSpec(format="logits")
    assert manifest.preprocess.resize_mode == "stretch"
    assert [v.metrics.quality for v in manifest.variants] == [0.98, 0.98]
    # The upgraded manifest is itself a valid schema 2 document.
    assert parse_manifest(manifest.to_bytes()) == manifest


def test_a_schema_1_manifest_without_a_task_field_loads_as_classification() -> None:
    raw = json.loads(V1_MANIFEST.read_bytes())
    del raw["task"]
    assert _parse(raw).task == "classification"


def test_a_schema_1_manifest_cannot_claim_another_task() -> None:
    raw = json.loads(V1_MANIFEST.read_bytes())
    raw["task"] = "detection"  # schema 1 had no way to say what a detector's outputs mean
    with pytest.raises(ManifestError, match="a detection manifest needs a head"):
        _parse(raw)


def test_the_trainer_side_factory_writes_schema_2_classifiers_without_spelling_out_the_head() -> None:
    manifest, _ = build_package("digits", 4)
    body = json.loads(manifest.to_bytes())
    assert body["schema_version"] == 2 and body["task"] == "classification"
    assert body["head"] == {"format": "logits", "output": None, "top_k": 3}
    assert parse_manifest(manifest.to_bytes()) == manifest


def test_latest_json_keeps_its_schema() -> None:
    latest = Latest(name="digits", version=2, manifest_sha256=SHA, published_at=utcnow())
    assert json.loads(latest.to_bytes())["schema_version"] == 1
    assert parse_latest(latest.to_bytes()) == latest


@pytest.mark.parametrize("fmt", ["yolo", "packed", "decoded"])
def test_detector_manifests_carry_their_output_contract(fmt: str) -> None:
    m = make_detection_manifest(fmt)
    assert (m.task, m.head.format, m.head.task) == ("detection", fmt, "detection")
    assert m.head.thresholds.score == 0.25 and m.head.thresholds.iou == 0.45  # type: ignore[union-attr]
    assert parse_manifest(m.to_bytes()) == m


def test_thresholds_and_box_space_are_recorded() -> None:
    d = detection_manifest_dict("yolo", head={"format": "yolo", "box_space": "normalized",
                                              "thresholds": {"score": 0.4, "iou": 0.6, "max_detections": 50}})
    head = _parse(d).head
    assert isinstance(head, YoloHeadSpec)
    assert (head.box_space, head.thresholds.score, head.thresholds.iou, head.thresholds.max_detections) == (
        "normalized", 0.4, 0.6, 50)
    assert head.nms_in_graph is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"head": {"format": "logits"}}, "head format 'logits' is for classification, not task 'detection'"),
        ({"head": {"format": "centroids"}}, "head"),
        ({"task": "anomaly"}, "task"),
        ({"labels": ["person", "car"]}, r"yolo output has 7 rows but 4 \+ 2 labels = 6"),
        ({"head": {"format": "yolo", "output": "nope"}}, r"head names outputs \['nope'\]"),
        ({"head": {"format": "yolo", "thresholds": {"score": 1.5}}}, "score"),
        ({"head": {"format": "yolo", "nms_in_graph": True}}, "nms_in_graph"),
    ],
)
def test_contracts_that_do_not_fit_are_refused_in_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        _parse(detection_manifest_dict("yolo", **change))
    assert "\n" not in str(info.value)


def test_a_detector_variant_needs_its_map_gate_figure() -> None:
    d = detection_manifest_dict("yolo")
    d["variants"][0]["metrics"] = {"accuracy": 0.9, "latency_ms_p50": 1.0, "latency_ms_p99": 2.0}
    with pytest.raises(ManifestError, match="lacks map50_95"):
        _parse(d)
    d["variants"][0]["metrics"] = {"latency_ms_p50": 1.0, "latency_ms_p99": 2.0}
    with pytest.raises(ManifestError, match=r"need accuracy \(classification\),? .*map50_95 \(detection\)"):
        _parse(d)


def test_decoded_heads_check_their_output_shapes() -> None:
    d = detection_manifest_dict("decoded")
    d["outputs"][0]["shape"] = ["batch", 100, 5]
    with pytest.raises(ManifestError, match=r"decoded boxes are \[batch, detections, 4\]"):
        _parse(d)
    d = detection_manifest_dict("decoded")
    d["outputs"][1]["shape"] = ["batch", 100, 1]  # some exports keep a trailing axis: the head accepts it
    assert _parse(d).head.format == "decoded"
    d["outputs"][1]["shape"] = ["batch", 100, 2]
    with pytest.raises(ManifestError, match=r"decoded scores is \[batch, detections\]"):
        _parse(d)
    d = detection_manifest_dict("decoded", head={"format": "decoded", "scores": "boxes"})
    with pytest.raises(ManifestError, match="different outputs"):
        _parse(d)


def test_a_classifier_head_names_probabilities_for_models_with_softmax_inside() -> None:
    m = _parse(manifest_dict(head={"format": "probabilities", "output": "logits", "top_k": 5}))
    assert (m.head.format, m.head.task) == ("probabilities", "classification")


def test_a_detector_manifest_must_state_its_head() -> None:
    d = detection_manifest_dict("yolo")
    del d["head"]
    with pytest.raises(ManifestError, match="a detection manifest needs a head"):
        _parse(d)
