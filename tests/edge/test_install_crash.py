"""kill -9 at every named point of an install, and at random moments: the next start always serves a verified model."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge.fault_injection import CRASH_ENV, CRASH_POINTS
from edge.model_cache import InstalledModel
from edge.package_verify import verify_package
from shared.object_store import LocalStore
from tests.edge.crash_worker import deploy, make_sync
from tests.edge.package_factory import KeyPair, make_package, new_keypair

REPO = Path(__file__).resolve().parents[2]
VERSIONS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, KeyPair]:
    """A store with v1..v5 and the public key that signed them, shared by every test here."""
    root = tmp_path_factory.mktemp("crash")
    key = new_keypair()
    pem = root / "trusted.pem"
    pem.write_bytes(
        key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    store = LocalStore(root / "store")
    for v in VERSIONS:
        make_package(store, "digits", v, key, bias=float(v))
    return store.root, pem, key


def _prepared_cache(tmp_path: Path, published: tuple[Path, Path, KeyPair], active: tuple[int, ...]) -> Path:
    store_dir, pem, _ = published
    cache = tmp_path / "cache"
    sync = make_sync(store_dir, cache, pem)
    for v in active:
        deploy(sync, v)
    return cache


def _worker(
    store_dir: Path, cache: Path, pem: Path, versions: tuple[int, ...], crash_at: str | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    args = [sys.executable, "-m", "tests.edge.crash_worker", str(store_dir), str(cache), str(pem)]
    return subprocess.Popen(
        [*args, *(str(v) for v in versions)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _assert_servable(published: tuple[Path, Path, KeyPair], cache: Path, allowed: set[int]) -> InstalledModel:
    """A fresh start recovers a version from `allowed` whose files verify, with no staging or temp leftovers."""
    store_dir, pem, key = published
    sync = make_sync(store_dir, cache, pem)
    got = sync.recover()
    assert got is not None, "restart found no servable model"
    assert got.version in allowed
    verify_package(got.dir, "digits", got.version, [key.public], allow_unsigned=False)
    assert list(sync.cache.staging_root.iterdir()) == []
    assert not list(sync.cache.model_dir.glob(".current.json.*"))
    ptr = sync.cache.read_pointer()
    assert ptr is not None and ptr.version == got.version
    model, _ = sync.load(got)  # and it loads and passes its smoke test
    model.close()
    return got


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_crash_point(tmp_path: Path, published: tuple[Path, Path, KeyPair], point: str) -> None:
    store_dir, pem, _ = published
    # v1 and v2 active, so activating v3 prunes v1 and every point, "during-prune" included, is reached.
    cache = _prepared_cache(tmp_path, published, active=(1, 2))
    proc = _worker(store_dir, cache, pem, (3,), crash_at=point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"worker did not die at {point}: rc={proc.returncode} {err.decode()}"
    got = _assert_servable(published, cache, allowed={2, 3})
    expected = 3 if CRASH_POINTS.index(point) >= CRASH_POINTS.index("after-pointer") else 2
    assert got.version == expected


def _wait_ready(proc: subprocess.Popen[bytes]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", f"worker failed to start: {line!r}"
    return time.monotonic()


def test_kill_at_random_moments(tmp_path: Path, published: tuple[Path, Path, KeyPair]) -> None:
    store_dir, pem, _ = published
    rng = random.Random(20240611)
    # Calibrate: how long the install work (after start-up) takes uninterrupted here; the first run is slower.
    work = float("inf")
    for i in range(2):
        cache = _prepared_cache(tmp_path / f"calibrate{i}", published, active=(1,))
        proc = _worker(store_dir, cache, pem, (2, 3, 4, 5))
        ready = _wait_ready(proc)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out == b"done\n", err.decode()
        work = min(work, time.monotonic() - ready)
    for i in range(8):
        cache = _prepared_cache(tmp_path / f"run{i}", published, active=(1,))
        proc = _worker(store_dir, cache, pem, (2, 3, 4, 5))
        _wait_ready(proc)
        time.sleep(rng.uniform(0.0, work))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        _assert_servable(published, cache, allowed=set(VERSIONS))
