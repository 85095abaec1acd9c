"""The runtime choice with real runtimes: measured, gated, cached; a missing or failing runtime leaves the next one."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.backends.base import Hardware, InferenceBackend
from edge.backends.capabilities import hint_unfit
from edge.backends.chain import BackendChain
from edge.backends.factory import backend_chain
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.config import AutoBackendConfig, OnnxRuntimeConfig, OpenVINOConfig, SyncConfig
from edge.errors import PackageRejected
from edge.golden_agreement import scorer_for
from edge.golden_check import load_golden
from edge.hardware import detect_hardware
from edge.model_sync import ModelSync
from edge.runtime_bench import PackageIdentity, choose, evaluate
from edge.runtime_choice import Candidate, ChoiceSettings
from shared.manifest import Variant
from shared.object_store import LocalStore
from tests.edge.detection_package import build_detection_package, make_detection_package
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.edge.simple_ort import SimpleOrtModel
from tests.edge.test_openvino_backend import failing_openvino
from tests.edge.tiny_onnx import variant_dict

CPU = Hardware(cpu_features=frozenset({"sse2", "sse4_2", "avx2", "avx512_vnni"}), extra={"machine": "x86_64"})
QUICK = {"bench_runs": 5, "bench_budget_s": 0.2}


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _auto(tmp_path: Path, **extra: object) -> AutoBackendConfig:
    return AutoBackendConfig.model_validate({
        "runtimes": ["onnxruntime", "openvino"], "threads": 1,
        "openvino": {"cache_dir": str(tmp_path / "ov-cache")}, **QUICK, **extra,
    })


def _sync(tmp_path: Path, store: LocalStore, key: KeyPair, backend: InferenceBackend, **cfg: object) -> ModelSync:
    config = SyncConfig(cache_dir=tmp_path / "cache", backoff_s=0.01, download_attempts=2, **cfg)  # type: ignore[arg-type]
    return ModelSync(config, store, [key.public], backend, CPU, sleep=lambda s: None)


def test_auto_times_every_candidate_serves_the_fastest_and_a_restart_reuses_the_choice(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    chain = backend_chain(CPU, _auto(tmp_path))
    assert chain.devices() == {"onnxruntime": ["cpu"], "openvino": ["CPU"]}
    assert set(chain.runtime_versions()) == {"onnxruntime", "openvino"}
    sync = _sync(tmp_path, store, key, chain)
    model, variant = sync.load(sync.install(1))
    result = model.result
    assert result.measured and not result.cached
    kinds = {(c.backend, c.precision, c.inference_precision) for c in result.candidates}
    assert {("onnxruntime", "fp32", "f32"), ("onnxruntime", "int8", "f32"), ("openvino", "fp32", "f32"),
            ("openvino", "int8", "f32")} <= kinds
    passed = [c for c in result.candidates if c.status != "rejected"]
    assert all(c.p50_ms is not None and c.p99_ms is not None and c.p50_ms <= c.p99_ms for c in passed)
    assert all(c.reason for c in result.candidates if c.status == "rejected")
    chosen = result.chosen
    assert chosen is not None and [c for c in result.candidates if c.status == "chosen"] == [chosen]
    assert chosen.p50_ms == min(c.p50_ms for c in passed if c.p50_ms is not None)
    assert (model.backend, model.precision, model.inference_precision) == (
        chosen.backend, chosen.precision, chosen.inference_precision
    )
    assert variant.file == chosen.variant
    assert model.run(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 10)
    model.close()

    restarted = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path)))
    again, _ = restarted.load(restarted.install(1))
    assert again.result.cached and again.result.measured_at == result.measured_at  # nothing measured
    assert again.result.chosen == chosen and again.backend == chosen.backend
    again.close()

    fresh, _ = restarted.load(restarted.install(1), remeasure=True)  # the `benchmark` command
    assert not fresh.result.cached and fresh.result.measured_at >= result.measured_at
    fresh.close()


def test_a_forced_runtime_wins_even_when_measuring(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    forced = OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov")
    sync = _sync(tmp_path, store, key, backend_chain(CPU, forced, benchmark_on_install=True))
    model, _ = sync.load(sync.install(1))
    assert model.backend == "openvino"
    assert {c.backend for c in model.result.candidates} == {"openvino"}
    model.close()


def test_forced_hint_and_variant_leave_one_candidate(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    forced = OpenVINOConfig(threads=1, inference_precision="bf16", cache_dir=tmp_path / "ov")
    sync = _sync(tmp_path, store, key, backend_chain(CPU, forced), variant="fp32")
    model, variant = sync.load(sync.install(1))
    assert (model.backend, variant.precision, model.inference_precision) == ("openvino", "fp32", "bf16")
    assert len(model.result.candidates) == 1 and not model.result.measured
    model.close()


def test_missing_openvino_logs_one_line_and_the_next_runtime_serves(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    make_package(store, "digits", 1, key)
    with caplog.at_level(logging.INFO):
        chain = backend_chain(CPU, _auto(tmp_path, runtimes=["openvino", "onnxruntime"]))
        sync = _sync(tmp_path, store, key, chain)
        model, _ = sync.load(sync.install(1))
    assert model.backend == "onnxruntime"
    assert len([r for r in caplog.records if "OpenVINO is not usable" in r.getMessage()]) == 1
    model.close()


def test_a_device_that_fails_to_compile_is_rejected_and_the_next_candidate_serves(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key)
    broken = OpenVINOBackend(OpenVINOConfig(cache_dir=tmp_path / "c"), importer=failing_openvino)
    chain = BackendChain([broken, OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1))], CPU, ChoiceSettings())
    sync = _sync(tmp_path, store, key, chain)
    model, _ = sync.load(sync.install(1))
    assert model.backend == "onnxruntime"
    first = model.result.candidates[0]
    assert (first.backend, first.status) == ("openvino", "rejected")
    assert first.reason is not None and "device lost while compiling" in first.reason
    assert sync.variant_failures == 1
    model.close()


def close_logits_model(path: Path, features: int = 64) -> Path:
    """Classes 0 and 1 differ by 1e-4 relative: FP32 always says 1, a 16-bit float (bf16 or f16) cannot tell them
    apart. Class 0's weights have 7 significant bits, exact in both, so class 1's round onto them: a tie, top-1 0."""
    rng = np.random.default_rng(0)
    w = np.zeros((features, 10), np.float32)
    w[:, 0] = rng.integers(64, 128, features) / 128
    w[:, 1] = w[:, 0] * (1 + 1e-4)
    b = np.full(10, -100.0, np.float32)
    b[:2] = 0.0
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["mm"]),
         helper.make_node("Add", ["mm", "B"], ["logits"])],
        "close",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("hint", ["bf16", "f16"])
def test_a_reduced_hint_that_disagrees_with_fp32_is_rejected_with_its_reason(tmp_path: Path, hint: str) -> None:
    path = close_logits_model(tmp_path / "model.fp32.onnx")
    fp32 = Variant.model_validate(variant_dict(path))
    backend = OpenVINOBackend(OpenVINOConfig(threads=1, cache_dir=tmp_path / "c"))
    here = detect_hardware()
    chain_hints = BackendChain([backend], here).offers()[0].hints
    if hint not in backend.hints() or hint_unfit(hint, here.cpu_features) is not None:
        # This CPU does not compute the hint: it is never offered to the choice (the refusal path).
        assert hint not in chain_hints and chain_hints[0] == "f32"
        return
    assert hint in chain_hints
    offered = [Candidate("openvino", "CPU", fp32, "f32"), Candidate("openvino", "CPU", fp32, hint)]
    inputs = np.random.default_rng(1).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    labels = np.ones(16, np.int64)  # FP32's top-1 on every sample
    identity = PackageIdentity("close", 1, "p" * 64, "hw", {"openvino": str(backend.version)})
    served = choose(
        offered,
        lambda c: backend.load(path, c.variant, inference_precision=c.hint),
        inputs,
        labels,
        ChoiceSettings(measure=True, runs=3, budget_s=0.1),
        identity,
    )
    assert served.inference_precision == "f32"
    f32, reduced = served.result.candidates
    assert f32.status == "chosen" and f32.agreement == 1.0
    assert reduced.status == "rejected" and reduced.agreement is not None and reduced.agreement < 0.99
    assert reduced.reason is not None and f"the {hint} hint needs at least 99.0%" in reduced.reason
    served.close()
    # A budget the hint cannot meet, and nothing else offered: one clear rejection naming the reason.
    refused = rf"no variant passed: fp32: top-1 agrees with FP32 on .* \(openvino, {hint}"
    with pytest.raises(PackageRejected, match=refused):
        choose(offered[1:], lambda c: backend.load(path, c.variant, inference_precision=c.hint), inputs, labels,
               ChoiceSettings(measure=True, runs=3, budget_s=0.1), identity)


def test_cpu_model_name_reads_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    from edge.runtime_bench import cpu_model_name

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert cpu_model_name(x86) == "Intel(R) Xeon(R) Processor"
    assert cpu_model_name(arm) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_model_name(tmp_path / "missing") is None


def test_a_detector_variant_whose_boxes_disagree_with_fp32_never_serves(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    make_detection_package(store, "squares", 1, key, precisions=("fp32", "int8"), sabotage={"int8": "shift"})
    sync = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path, runtimes=["onnxruntime"])),
                 model="squares")
    model, variant = sync.load(sync.install(1))
    assert variant.precision == "fp32"
    int8 = [c for c in model.result.candidates if c.precision == "int8"]
    assert int8 and all(c.status == "rejected" and "F1 0.000" in (c.reason or "") for c in int8)
    model.close()


def test_a_detection_hint_is_gated_on_f1_against_the_f32_run(tmp_path: Path) -> None:
    manifest, files = build_detection_package("squares", 1, precisions=("fp32", "int8"), sabotage={"int8": "ghosts"})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    golden = load_golden(tmp_path / "golden.npz", manifest)
    scorer = scorer_for(golden, manifest, 0.9)
    fp32 = manifest.variants[0]
    # A reduced-precision hint that (here, by construction) invents objects beside every real one.
    runs = {"f32": "model.fp32.onnx", "bf16": "model.int8.onnx"}
    offered = [Candidate("onnxruntime", "cpu", fp32, "f32"), Candidate("onnxruntime", "cpu", fp32, "bf16")]
    outcomes, best = evaluate(offered, lambda c: SimpleOrtModel(tmp_path / runs[c.hint]), golden.inputs,
                              scorer.reference, ChoiceSettings(measure=True, runs=2, warmup=0, budget_s=0.1),
                              scorer=scorer)
    assert outcomes[0].rejected is None and outcomes[0].agreement == 1.0
    assert outcomes[1].rejected is not None and "detection F1 against FP32" in outcomes[1].rejected
    assert best is not None and best[1] is outcomes[0]
    best[0].close()


def test_a_detector_decoded_in_its_graph_passes_on_every_runtime(
    tmp_path: Path, store: LocalStore, key: KeyPair
) -> None:
    # Boxes, scores and class ids are three outputs: each runtime hands over all of them by name.
    make_detection_package(store, "squares", 1, key, contract="decoded")
    sync = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path)), model="squares")
    model, _ = sync.load(sync.install(1))
    f32 = [c for c in model.result.candidates if c.inference_precision == "f32"]
    assert {c.backend for c in f32} == {"onnxruntime", "openvino"}
    assert all(c.status != "rejected" for c in f32), [(c.backend, c.reason) for c in f32]
    model.close()
