"""A runtime choice recorded ahead of time on one target serves identical devices without timing; anything else
(another fingerprint, other runtimes, a tampered or foreign record, a forced choice) leaves the device measuring."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from edge import model_sync, runtime_bench
from edge.backends.base import Hardware
from edge.backends.factory import backend_chain
from edge.batch_figures import BATCH_SIZES
from edge.config import AgentConfig, AutoBackendConfig, OnnxRuntimeConfig, SyncConfig
from edge.errors import PackageRejected
from edge.model_sync import ModelSync
from edge.runtime_bench import ChosenModel
from edgeferry.bench_target import record_choice
from shared.choice_record import ChoiceRecord, record_key, record_signature_key, sign_record, verify_record
from shared.errors import StoreNotFoundError
from shared.object_store import LocalStore
from tests.edge.package_factory import KeyPair, make_package, new_keypair

CPU = Hardware(cpu_features=frozenset({"sse2", "sse4_2", "avx2"}), extra={"machine": "x86_64"})
# The same CPU with one more kernel-relevant flag: another fingerprint, same candidates.
OTHER_CPU = Hardware(cpu_features=frozenset({"sse2", "sse4_2", "avx2", "avx512_bf16"}), extra={"machine": "x86_64"})
BACKEND = {"type": "auto", "runtimes": ["onnxruntime"], "threads": 1, "bench_runs": 5, "bench_budget_s": 0.2}
TARGET = "lab-x86"


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def key_file(tmp_path: Path, key: KeyPair) -> Path:
    path = tmp_path / "publisher.key"
    path.write_bytes(key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return path


def fleet_config(**backend: object) -> AgentConfig:
    return AgentConfig.model_validate({"backend": {**BACKEND, **backend}})


def record(tmp_path: Path, store: LocalStore, key: KeyPair, hw: Hardware = CPU, **kw: object) -> None:
    record_choice(store, "digits", TARGET, key_file(tmp_path, key), fleet_config(), hardware=hw, **kw)  # type: ignore[arg-type]


def device(tmp_path: Path, store: LocalStore, key: KeyPair, hw: Hardware = CPU, name: str = "dev",
           target: str | None = TARGET, backend: AutoBackendConfig | OnnxRuntimeConfig | None = None,
           max_batch: int = 1, **cfg: object) -> ModelSync:
    config = SyncConfig(cache_dir=tmp_path / name, backoff_s=0.01, download_attempts=2, target=target, **cfg)  # type: ignore[arg-type]
    chain = backend_chain(hw, backend or AutoBackendConfig.model_validate(BACKEND), max_batch=max_batch)
    return ModelSync(config, store, [key.public], chain, hw, sleep=lambda s: None)


class Timings:
    """Counts runtime choices timed on the device (the record must make this zero), and batch-size timings."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.batches = 0
        evaluate, time_batch_sizes = runtime_bench.evaluate, runtime_bench.time_batch_sizes

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return evaluate(*args, **kwargs)  # type: ignore[arg-type]

        def batches(*args: object, **kwargs: object) -> dict[int, float]:
            self.batches += 1
            return time_batch_sizes(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(runtime_bench, "evaluate", counted)
        monkeypatch.setattr(runtime_bench, "time_batch_sizes", batches)


def serve(sync: ModelSync, version: int = 1) -> ChosenModel:
    chosen, _ = sync.load(sync.install(version))
    return chosen


def test_recorded_choice_round_trip_serves_without_timing_and_restarts_from_the_cache(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    manifest_before = store.get("models/digits/1/manifest.json")
    latest_before = store.get("models/digits/latest.json")
    record(tmp_path, store, key)
    # The package and its pointer are byte for byte as published; the record sits beside them, signed.
    assert store.get("models/digits/1/manifest.json") == manifest_before
    assert store.get("models/digits/latest.json") == latest_before
    written = verify_record(store.get(record_key("digits", 1, TARGET)),
                            store.get(record_signature_key("digits", 1, TARGET)), [key.public])
    assert written.target == TARGET and written.result.measured and written.result.chosen is not None
    assert all(c.p50_ms is not None for c in written.result.candidates if c.status != "rejected")

    timings = Timings(monkeypatch)
    chosen = serve(device(tmp_path, store, key))
    assert timings.calls == 0
    result = chosen.result
    assert (result.source, result.target, result.cached) == ("recorded", TARGET, False)
    assert result.chosen == written.result.chosen
    assert (chosen.backend, chosen.precision) == (written.result.chosen.backend, written.result.chosen.precision)
    assert chosen.run(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 10)
    chosen.close()

    # A restart reads its own cache: still the recorded choice, still nothing timed, no store read for it.
    store.root.joinpath(record_key("digits", 1, TARGET)).unlink()
    again = serve(device(tmp_path, store, key))
    assert (again.result.source, again.result.target, again.result.cached) == ("recorded", TARGET, True)
    assert timings.calls == 0
    again.close()


def test_a_recorded_choice_times_its_batch_sizes_once_here_and_keeps_them_for_the_multi_stream_scheduler(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32",))
    record(tmp_path, store, key)
    timings = Timings(monkeypatch)
    single = serve(device(tmp_path, store, key, name="one-source"))
    # An agent serving one source never batches: it times nothing at all, not even batch sizes.
    assert (single.result.source, timings.calls, timings.batches, single.batch_ms) == ("recorded", 0, 0, {})
    single.close()
    chosen = serve(device(tmp_path, store, key, max_batch=4))
    # The choice is the record's (nothing of it timed), but batch latencies are this device's: timed on first load.
    assert (chosen.result.source, timings.calls, timings.batches) == ("recorded", 0, 1)
    assert sorted(chosen.batch_ms) == list(BATCH_SIZES) and chosen.largest_batch_within(1e9) == 8
    chosen.close()
    again = serve(device(tmp_path, store, key, max_batch=4))
    assert again.result.cached and again.batch_ms == chosen.batch_ms  # kept: a restart times nothing
    assert (timings.calls, timings.batches) == (0, 1)
    again.close()


def test_a_device_with_another_fingerprint_measures_itself_and_says_why_once(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_package(store, "digits", 1, key)
    record(tmp_path, store, key)
    timings = Timings(monkeypatch)
    sync = device(tmp_path, store, key, hw=OTHER_CPU)
    with caplog.at_level(logging.INFO):
        chosen = serve(sync)
        chosen.close()
        chosen = serve(sync, 1)  # the same package again (the cache now answers: no second line either)
        chosen.close()
    assert timings.calls >= 1
    assert chosen.result.source == "measured" and chosen.result.target is None
    lines = [r.getMessage() for r in caplog.records if "does not match this device" in r.getMessage()]
    assert len(lines) == 1 and "hardware fingerprint" in lines[0]
    assert sync.metrics()["choice_record_rejects"] == 0  # not hostile, only another device


def test_other_runtime_versions_measure(tmp_path: Path, store: LocalStore, key: KeyPair,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(store, "digits", 1, key)
    record(tmp_path, store, key)
    doc = json.loads(store.get(record_key("digits", 1, TARGET)))
    doc["result"]["runtimes"] = {"onnxruntime": "0.0.1 (CPUExecutionProvider)"}
    body, sig = sign_record(ChoiceRecord.model_validate(doc), key.private)  # validly signed, older runtime
    store.put(record_signature_key("digits", 1, TARGET), sig)
    store.put(record_key("digits", 1, TARGET), body)
    timings = Timings(monkeypatch)
    sync = device(tmp_path, store, key)
    chosen = serve(sync)
    assert timings.calls >= 1 and chosen.result.source == "measured"
    assert sync.metrics()["choice_record_rejects"] == 0
    chosen.close()


@pytest.mark.parametrize("tamper", ["flipped", "foreign key", "unsigned", "other package"])
def test_a_tampered_or_foreign_record_is_refused_counted_and_the_device_measures(
    tamper: str, tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_package(store, "digits", 1, key)
    make_package(store, "digits", 2, key, bias=3.0)
    record(tmp_path, store, key, version=1)
    k1, s1 = record_key("digits", 1, TARGET), record_signature_key("digits", 1, TARGET)
    if tamper == "flipped":
        body = store.get(k1).replace(b'"status": "chosen"', b'"status": "passed"', 1)
        store.put(k1, body)
    elif tamper == "foreign key":
        store.put(s1, sign_record(verify_record(store.get(k1), store.get(s1), [key.public]),
                                  new_keypair().private)[1])
    elif tamper == "unsigned":
        store.root.joinpath(s1).unlink()
    else:  # v1's valid record copied onto v2: signed by the right key, for another manifest
        store.put(record_key("digits", 2, TARGET), store.get(k1))
        store.put(record_signature_key("digits", 2, TARGET), store.get(s1))
    version = 2 if tamper == "other package" else 1
    timings = Timings(monkeypatch)
    sync = device(tmp_path, store, key)
    with caplog.at_level(logging.WARNING):
        chosen = serve(sync, version)
    assert timings.calls >= 1 and chosen.result.source == "measured"
    assert sync.metrics()["choice_record_rejects"] == 1
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    chosen.close()


def test_a_forced_runtime_in_config_wins_over_the_record(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    record(tmp_path, store, key)
    recorded = verify_record(store.get(record_key("digits", 1, TARGET)),
                             store.get(record_signature_key("digits", 1, TARGET)), [key.public])
    assert recorded.result.chosen is not None
    other = "fp32" if recorded.result.chosen.precision == "int8" else "int8"
    chosen = serve(device(tmp_path, store, key, variant=other, benchmark_on_install=True))
    assert chosen.precision == other and chosen.result.source == "measured"
    chosen.close()


def test_a_recorded_choice_that_fails_its_smoke_test_here_is_not_served(
    tmp_path: Path, store: LocalStore, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    record(tmp_path, store, key)
    recorded = verify_record(store.get(record_key("digits", 1, TARGET)),
                             store.get(record_signature_key("digits", 1, TARGET)), [key.public]).result.chosen
    assert recorded is not None
    real = model_sync.run_smoke_test

    def smoke(*args: object, precision: str, **kwargs: object) -> object:
        if precision == recorded.precision:  # as if this device's runtime computed the recorded pick wrongly
            raise PackageRejected(f"{recorded.variant}: golden sample 0 disagrees")
        return real(*args, precision=precision, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(model_sync, "run_smoke_test", smoke)
    timings = Timings(monkeypatch)
    chosen = serve(device(tmp_path, store, key))
    assert chosen.precision != recorded.precision and chosen.result.source == "measured"
    assert timings.calls >= 1
    chosen.close()


def test_no_target_configured_never_reads_a_record(tmp_path: Path, store: LocalStore, key: KeyPair,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_package(store, "digits", 1, key)
    record(tmp_path, store, key)
    reads: list[str] = []
    real_get = store.get

    def get(k: str) -> bytes:
        reads.append(k)
        return real_get(k)

    monkeypatch.setattr(store, "get", get)
    chosen = serve(device(tmp_path, store, key, target=None))
    assert chosen.result.source == "measured" and not [k for k in reads if "/choices/" in k]
    chosen.close()


def test_recording_for_an_unknown_model_or_version_says_so(tmp_path: Path, store: LocalStore, key: KeyPair) -> None:
    with pytest.raises(StoreNotFoundError, match="no published versions of 'digits'"):
        record(tmp_path, store, key)
    make_package(store, "digits", 1, key)
    with pytest.raises(StoreNotFoundError, match="version 7 is not published"):
        record(tmp_path, store, key, version=7)
