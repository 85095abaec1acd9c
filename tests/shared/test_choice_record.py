"""The recorded-choice object: signed canonical bytes, refused unsigned, tampered, malformed or unmeasured."""

from __future__ import annotations

import pytest

from shared.choice_record import ChoiceRecord, record_key, record_signature_key, sign_record, verify_record
from shared.errors import InvalidNameError, ManifestError, SignatureError
from shared.manifest import utcnow
from shared.payloads import BenchmarkCandidate, BenchmarkResult
from shared.signing import sign
from tests.edge.package_factory import new_keypair

CHOSEN = BenchmarkCandidate(backend="onnxruntime", device="cpu", variant="model.int8.onnx", precision="int8",
                            inference_precision="f32", status="chosen", p50_ms=0.2, p99_ms=0.3, agreement=1.0)


def result(**update: object) -> BenchmarkResult:
    base = BenchmarkResult(model="digits", version=3, package_sha256="a" * 64, hardware="f" * 16,
                           runtimes={"onnxruntime": "1.2 (CPUExecutionProvider)"}, cache_key="k", measured=True,
                           measured_at=1, chosen=CHOSEN, candidates=[CHOSEN], target="orin")
    return base.model_copy(update=update)


def record(**update: object) -> ChoiceRecord:
    return ChoiceRecord(target="orin", recorded_at=utcnow(), recorded_by="1.0", host={"cpu": "x"},
                        result=result(**update))


def test_a_signed_record_round_trips_and_lives_beside_its_version() -> None:
    key = new_keypair()
    body, sig = sign_record(record(), key.private)
    assert verify_record(body, sig, [key.public]) == ChoiceRecord.model_validate_json(body)
    assert record_key("digits", 3, "orin") == "models/digits/3/choices/orin.json"
    assert record_signature_key("digits", 3, "orin") == "models/digits/3/choices/orin.json.sig"
    with pytest.raises(InvalidNameError):
        record_key("digits", 3, "../3")


def test_unsigned_tampered_or_untrusted_records_are_refused() -> None:
    key = new_keypair()
    body, sig = sign_record(record(), key.private)
    with pytest.raises(SignatureError, match="no signature"):
        verify_record(body, None, [key.public])
    with pytest.raises(SignatureError, match="does not match"):
        verify_record(body.replace(b"0.2", b"0.1"), sig, [key.public])
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        verify_record(body, sig, [new_keypair().public])


def test_a_signed_but_malformed_or_unmeasured_record_is_refused() -> None:
    key = new_keypair()
    for body in (b"{}", b"not json"):
        with pytest.raises(ManifestError, match="recorded choice invalid"):
            verify_record(body, sign(body, key.private), [key.public])
    with pytest.raises(ValueError, match="must be measured"):
        record(measured=False)
    with pytest.raises(ValueError, match="for target 'other'"):
        record(target="other")

