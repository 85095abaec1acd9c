"""Fetching a version from real stores (directory, S3 over HTTP, plain HTTP with Range): resume, retry, refuse."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from edge.errors import PackageRejected
from edge.package_fetch import RetryPolicy, fetch_version
from shared.errors import StoreError, StoreNotFoundError
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, version_prefix
from shared.object_store import LocalStore, ObjectStore
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.edge.package_factory import GOLDEN_FILE, KeyPair, make_package, new_keypair
from tests.edge.range_http_server import serve
from tests.fixtures.s3 import S3Endpoint

MODEL = "model.fp32.onnx"


class Sleeps:
    """Records backoff delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def key() -> KeyPair:
    return new_keypair()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    d = tmp_path / "staging"
    d.mkdir()
    return d


def _policy(sleeps: Sleeps | None = None, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, backoff_s=0.25, sleep=sleeps or Sleeps())


def _fetch(store: ObjectStore, staging: Path, key: KeyPair, version: int = 1, **kw: object):  # type: ignore[no-untyped-def]
    policy = kw.pop("policy", None) or _policy()
    return fetch_version(store, "digits", version, staging, [key.public], policy=policy, **kw)  # type: ignore[arg-type]


def test_local_store_fetch_verifies_and_lays_out_the_package(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    fetched = _fetch(store, staging, key)
    assert fetched.manifest.version == 1
    assert fetched.key_id is not None
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        [MANIFEST_FILE, SIGNATURE_FILE, GOLDEN_FILE, MODEL, "model.int8.onnx"]
    )
    assert (staging / MODEL).read_bytes() == store.get(version_prefix("digits", 1) + MODEL)


def test_s3_fetch_resumes_a_partial_file(s3: S3Endpoint, staging: Path, key: KeyPair) -> None:
    s3_store = open_store(StoreConfig(uri=f"s3://{s3.bucket}/fleet", endpoint_url=s3.url))
    make_package(s3_store, "digits", 1, key)
    full = s3_store.get(version_prefix("digits", 1) + MODEL)
    (staging / MODEL).write_bytes(full[:100])
    fetched = _fetch(s3_store, staging, key)
    assert fetched.manifest.name == "digits"
    assert (staging / MODEL).read_bytes() == full
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert "fleet/models/digits/1/manifest.json" in keys


def test_http_fetch_resumes_after_the_server_cuts_the_connection(
    store: LocalStore, staging: Path, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key)
    size = len(store.get(version_prefix("digits", 1) + MODEL))
    sleeps = Sleeps()
    with serve(store.root) as (url, state):
        state.cut_after, state.cut_key = 200, MODEL
        _fetch(open_store(StoreConfig(uri=url)), staging, key, policy=_policy(sleeps))
        model_requests = [r for k, r in state.requests if k.endswith(MODEL)]
    assert model_requests == [None, "bytes=200-"]
    assert (staging / MODEL).stat().st_size == size
    assert sleeps.delays == [0.25]


def test_http_transient_errors_are_retried_with_exponential_backoff(
    store: LocalStore, staging: Path, key: KeyPair
) -> None:
    make_package(store, "digits", 1, key)
    sleeps = Sleeps()
    with serve(store.root) as (url, state):
        state.fail_first = 3
        fetched = _fetch(open_store(StoreConfig(uri=url)), staging, key, policy=_policy(sleeps))
    assert fetched.manifest.version == 1
    assert sleeps.delays == [0.25, 0.5, 1.0]


def test_retries_are_bounded(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    sleeps = Sleeps()
    with serve(store.root) as (url, state):
        state.fail_first = 100
        with pytest.raises(StoreError, match=r"failed after 3 attempts.*HTTP 503"):
            _fetch(open_store(StoreConfig(uri=url)), staging, key, policy=_policy(sleeps, attempts=3))
        assert len(state.requests) == 3
    assert sleeps.delays == [0.25, 0.5]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(attempts=20, backoff_s=1.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.delay(15) == 60.0


def test_local_partial_file_is_resumed(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    full = store.get(version_prefix("digits", 1) + GOLDEN_FILE)
    (staging / GOLDEN_FILE).write_bytes(full[:1000])
    _fetch(store, staging, key)
    assert (staging / GOLDEN_FILE).read_bytes() == full


def test_a_stale_partial_file_is_caught_by_the_hash(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    (staging / MODEL).write_bytes(b"\0" * 100)
    with pytest.raises(PackageRejected, match=f"{MODEL}: sha256"):
        _fetch(store, staging, key)


@pytest.mark.parametrize("victim", [MODEL, GOLDEN_FILE])
def test_flipped_byte_is_rejected(store: LocalStore, staging: Path, key: KeyPair, victim: str) -> None:
    make_package(store, "digits", 1, key, corrupt=victim)
    with pytest.raises(PackageRejected, match=f"{victim}: sha256"):
        _fetch(store, staging, key)


def test_tampered_manifest_fails_its_signature(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, corrupt=MANIFEST_FILE)
    with pytest.raises(PackageRejected, match="does not match its content"):
        _fetch(store, staging, key)


def test_bad_signature_is_rejected(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, bad_signature=True)
    with pytest.raises(PackageRejected, match="does not match its content"):
        _fetch(store, staging, key)


def test_untrusted_key_is_rejected_before_any_payload_is_downloaded(
    store: LocalStore, staging: Path, key: KeyPair
) -> None:
    make_package(store, "digits", 1, new_keypair())
    with serve(store.root) as (url, state):
        with pytest.raises(PackageRejected, match="not among the trusted keys"):
            _fetch(open_store(StoreConfig(uri=url)), staging, key)
        fetched_keys = {k.rsplit("/", 1)[-1] for k, _ in state.requests}
    assert fetched_keys == {MANIFEST_FILE, SIGNATURE_FILE}
    assert list(staging.iterdir()) == []


def test_unsigned_is_rejected_unless_allowed(store: LocalStore, tmp_path: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key, unsigned=True)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    with pytest.raises(PackageRejected, match="unsigned"):
        _fetch(store, first, key)
    fetched = _fetch(store, second, key, allow_unsigned=True)
    assert fetched.key_id is None
    assert not (second / SIGNATURE_FILE).exists()


@pytest.mark.parametrize("unsafe", ["../x.onnx", "/etc/passwd", "a/b.onnx", ".hidden.onnx"])
def test_traversal_names_are_refused(
    store: LocalStore, staging: Path, key: KeyPair, tmp_path: Path, unsafe: str
) -> None:
    make_package(store, "digits", 1, key, traversal=unsafe)
    with pytest.raises(PackageRejected, match="unsafe file name"):
        _fetch(store, staging, key)
    assert list(staging.iterdir()) == []
    assert not (tmp_path / "x.onnx").exists()


def test_signed_manifest_of_another_version_is_a_replay(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 5, key, manifest_version=1)
    with pytest.raises(PackageRejected, match=r"describes digits v1 \(replayed"):
        _fetch(store, staging, key, version=5)


def test_missing_payload_is_a_store_error_to_retry_later(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    (store.root / version_prefix("digits", 1) / GOLDEN_FILE).unlink()
    with pytest.raises(StoreNotFoundError, match=r"golden\.npz, named by the signed manifest, is not in"):
        _fetch(store, staging, key)


def test_object_larger_than_signed_size_is_rejected(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    path = store.root / version_prefix("digits", 1) / MODEL
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(PackageRejected, match=r"has \d+ bytes but \d+ are declared; download stopped"):
        _fetch(store, staging, key)
    assert not (staging / MODEL).exists()


def test_unpublished_version_is_not_found(store: LocalStore, staging: Path, key: KeyPair) -> None:
    make_package(store, "digits", 1, key)
    with pytest.raises(StoreNotFoundError, match="digits version 7 is not published"):
        _fetch(store, staging, key, version=7)


class _Slow(LocalStore):
    """A store whose model download stops half way until the agent has logged a progress line (no sleeps)."""

    def __init__(self, root: Path, progressed: threading.Event) -> None:
        super().__init__(root)
        self.progressed = progressed

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        if key.endswith(MODEL):
            data = self.get(key)
            dest.write_bytes(data[: len(data) // 2])
            assert self.progressed.wait(30), "no progress line while the download stalled"
        super().download(key, dest, size)


def test_a_long_download_logs_periodic_progress_lines_not_one_line_per_file(
    tmp_path: Path, staging: Path, key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    progressed = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "%" in record.getMessage() and "/s" in record.getMessage():
                progressed.set()

    store = _Slow(tmp_path / "store", progressed)
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    watcher = Seen()
    logging.getLogger("edge").addHandler(watcher)
    try:
        with caplog.at_level(logging.INFO, logger="edge"):
            _fetch(store, staging, key, progress_interval_s=0.05)
    finally:
        logging.getLogger("edge").removeHandler(watcher)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.package_fetch"]
    files = len(list(staging.iterdir())) - 2  # manifest and signature are not downloads
    progress = [m for m in lines if "%" in m and "/s" in m]
    assert progress, lines
    first = progress[0]
    assert "digits v1" in first and " of " in first, first
    total = sum(p.stat().st_size for p in staging.iterdir() if p.name not in {MANIFEST_FILE, SIGNATURE_FILE})
    assert f"{total / 1e6:.1f} MB" in first or f"{total / 1e3:.1f} kB" in first, first
    assert not any(f"downloading {version_prefix('digits', 1)}" in m for m in lines), lines  # no line per file
    fetched = [m for m in lines if m.startswith("fetched digits v1")]
    assert len(fetched) == 1 and "/s" in fetched[0], lines
    assert files >= 3 and len(lines) < files + len(progress), lines


def test_a_quick_download_logs_one_line_and_no_progress(store: LocalStore, staging: Path, key: KeyPair,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    make_package(store, "digits", 1, key, precisions=("fp32", "int8"))
    with caplog.at_level(logging.INFO, logger="edge"):
        _fetch(store, staging, key, progress_interval_s=3600)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.package_fetch"]
    assert len(lines) <= 2 and lines[-1].startswith("fetched digits v1"), lines


def test_progress_lines_say_bytes_rate_and_percent() -> None:
    from edge.download_progress import progress_line

    assert progress_line("digits v3", 12_300_000, 45_600_000, 5.0) == (
        "downloading digits v3: 12.3 of 45.6 MB (27%), 2.5 MB/s, about 14 s left"
    )
    assert progress_line("digits v3", 0, 2_000, 0.0) == "downloading digits v3: 0.0 of 2.0 kB (0%), 0.0 kB/s"
    assert progress_line("digits v3", 5, 0, 1.0).startswith("downloading digits v3: 0.0 of 0.0 kB (100%)")
