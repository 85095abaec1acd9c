"""The runtime choice cached on disk per (package, hardware, runtime versions, settings): a restart does not measure."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from shared.object_store import atomic_write
from shared.payloads import BenchmarkResult

log = logging.getLogger(__name__)

# Under sync.cache_dir, beside the installed versions.
CHOICE_CACHE_DIR = "runtime-choice"
# Entries kept (newest first): a few packages x settings; older ones only cost a re-measure if they come back.
KEEP_ENTRIES = 16
# Beside an entry: the chosen model's batch-size latencies measured with it (edge/batch_figures.py).
BATCHES_SUFFIX = ".batches.json"


class ChoiceCache:
    """One JSON file per cache key; an unreadable entry is a miss (logged), never an error."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        """Where the entry for a key lives."""
        return self.directory / f"{key}.json"

    def get(self, key: str) -> BenchmarkResult | None:
        """The cached result, or None when there is none or it cannot be read."""
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("runtime choice cache %s unreadable (%s); measuring again", path, exc)
            return None
        try:
            result = BenchmarkResult.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("runtime choice cache %s is damaged (%d errors); measuring again", path, exc.error_count())
            return None
        return result if result.cache_key == key else None

    def put(self, result: BenchmarkResult) -> None:
        """Store a measured result atomically; a failed write only costs a re-measure after restart."""
        try:
            atomic_write(self.path(result.cache_key), result.model_dump_json(indent=2).encode())
        except OSError as exc:
            log.warning("cannot cache the runtime choice in %s (%s); the next start measures again", self.directory,
                        exc)
            return
        self._prune()

    def batches_path(self, key: str) -> Path:
        """Where the batch-size figures measured with a key's choice live."""
        return self.directory / f"{key}{BATCHES_SUFFIX}"

    def get_batches(self, key: str) -> dict[int, float]:
        """Batch size -> median ms measured with the choice; empty when none were (or they cannot be read)."""
        path = self.batches_path(key)
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("cache_key") != key:
                return {}
            return {int(size): float(ms) for size, ms in doc["batch_ms"].items() if float(ms) > 0}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("batch figures %s unreadable (%s); the scheduler measures them itself", path, exc)
            return {}

    def put_batches(self, key: str, batch_ms: Mapping[int, float]) -> None:
        """Keep the batch-size figures beside the choice; a failed write only costs a measurement later."""
        doc = {"cache_key": key, "batch_ms": {str(size): ms for size, ms in sorted(batch_ms.items())}}
        try:
            atomic_write(self.batches_path(key), json.dumps(doc, indent=2).encode())
        except OSError as exc:
            log.warning("cannot keep the batch figures in %s (%s); they are measured again", self.directory, exc)

    def _prune(self) -> None:
        """Drop all but the newest KEEP_ENTRIES entries, with their batch figures."""
        try:
            entries = sorted((p for p in self.directory.glob("*.json") if not p.name.endswith(BATCHES_SUFFIX)),
                             key=lambda p: p.stat().st_mtime_ns, reverse=True)
            for old in entries[KEEP_ENTRIES:]:
                old.unlink(missing_ok=True)
                self.batches_path(old.stem).unlink(missing_ok=True)
        except OSError as exc:
            log.debug("pruning the runtime choice cache failed: %s", exc)
