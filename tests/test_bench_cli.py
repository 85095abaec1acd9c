"""`edgeferry bench --target` as an operator runs it: the recorded choice a device on the same hardware then serves
without timing, and one line with exit 1 for an unknown model or version, a wrong key or a bad target name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge import runtime_bench
from edge.backends.factory import backend_chain
from edge.config import AutoBackendConfig, SyncConfig
from edge.hardware import detect_hardware
from edge.model_sync import ModelSync
from shared.object_store import LocalStore
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.test_cli import one_line_error, run

BACKEND = {"type": "auto", "runtimes": ["onnxruntime"], "threads": 1, "bench_runs": 5, "bench_budget_s": 0.2}


def write_key(path: Path, key: KeyPair) -> Path:
    path.write_bytes(key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[LocalStore, KeyPair, Path, Path]:
    """A store with digits v1 published, the publisher's key file and the fleet's agent config."""
    store = LocalStore(tmp_path / "store")
    key = new_keypair()
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    config = tmp_path / "edge.yaml"
    config.write_text(json.dumps({"backend": BACKEND}))  # JSON is YAML
    return store, key, write_key(tmp_path / "publisher.key", key), config


def test_bench_records_a_choice_that_a_device_on_this_hardware_serves_without_timing(
    tmp_path: Path, fleet: tuple[LocalStore, KeyPair, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, key, key_path, config = fleet
    proc = run("bench", "--store", str(store.root), "--name", "digits", "--target", "lab-x86",
               "--signing-key", str(key_path), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "chosen: onnxruntime" in proc.stdout and "models/digits/1/choices/lab-x86.json" in proc.stdout
    assert "p50" in proc.stdout

    def no_timing(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("a candidate was timed although a matching recorded choice exists")

    monkeypatch.setattr(runtime_bench, "latency_samples_ms", no_timing)
    hw = detect_hardware()
    cfg = SyncConfig(cache_dir=tmp_path / "device", target="lab-x86", backoff_s=0.01)
    sync = ModelSync(cfg, store, [key.public], backend_chain(hw, AutoBackendConfig.model_validate(BACKEND)), hw)
    chosen, _ = sync.load(sync.install(1))
    assert (chosen.result.source, chosen.result.target) == ("recorded", "lab-x86")
    chosen.close()


def test_bench_bad_input_is_one_line(tmp_path: Path, fleet: tuple[LocalStore, KeyPair, Path, Path]) -> None:
    store, _, key_path, config = fleet
    base = ["bench", "--store", str(store.root), "--target", "lab-x86", "--config", str(config)]
    assert "no published versions of 'nope'" in one_line_error(
        run(*base, "--name", "nope", "--signing-key", str(key_path))
    )
    assert "digits version 9 is not published" in one_line_error(
        run(*base, "--name", "digits", "--model-version", "9", "--signing-key", str(key_path))
    )
    stranger = write_key(tmp_path / "stranger.key", new_keypair())
    line = one_line_error(run(*base, "--name", "digits", "--model-version", "1", "--signing-key", str(stranger)))
    assert "not among the trusted keys" in line and "--signing-key must be the private key that signed" in line
    # latest.json: the same key check
    line = one_line_error(run(*base, "--name", "digits", "--signing-key", str(stranger)))
    assert "latest.json" in line and "not among the trusted keys" in line and "--signing-key must be" in line
    missing = one_line_error(run(*base, "--name", "digits", "--signing-key", str(tmp_path / "missing.key")))
    assert "not found" in missing and "make train-cloud" in missing and "keygen" not in missing
    assert "invalid target name" in one_line_error(
        run("bench", "--store", str(store.root), "--target", "a/b", "--signing-key", str(key_path),
            "--config", str(config))
    )
    assert not list(store.root.rglob("choices"))  # nothing half-written by any of them
