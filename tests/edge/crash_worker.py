"""Subprocess for crash tests: recover, then install + smoke-test + activate the given versions in order.

python -m tests.edge.crash_worker <store_dir> <cache_dir> <public_key.pem> <version> [<version> ...]
EDGEFERRY_CRASH_AT=<point> makes it SIGKILL itself at that point.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edge.backends.base import Hardware
from edge.config import SyncConfig
from edge.model_sync import ModelSync, load_trusted_keys
from shared.object_store import LocalStore
from tests.edge.simple_ort import SimpleOrtBackend

KEEP_VERSIONS = 2


def make_sync(store_dir: Path, cache_dir: Path, key_path: Path) -> ModelSync:
    """The ModelSync both the worker and the test use, so they see the same cache the same way."""
    cfg = SyncConfig(cache_dir=cache_dir, keep_versions=KEEP_VERSIONS, backoff_s=0.01, download_attempts=2)
    return ModelSync(cfg, LocalStore(store_dir), load_trusted_keys([key_path]), SimpleOrtBackend(), Hardware())


def deploy(sync: ModelSync, version: int) -> None:
    """The agent's update sequence."""
    installed = sync.install(version)
    model, _ = sync.load(installed)
    model.close()
    sync.activate(version)


def main(argv: list[str]) -> int:
    """Run the sequence; exit 0 when it completes without being killed."""
    store_dir, cache_dir, key_path = (Path(a) for a in argv[:3])
    sync = make_sync(store_dir, cache_dir, key_path)
    if sync.recover() is None:
        print("no verified model at start", file=sys.stderr)
        return 2
    print("ready", flush=True)  # the test times its kill from here, past interpreter start-up
    for version in (int(v) for v in argv[3:]):
        deploy(sync, version)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
