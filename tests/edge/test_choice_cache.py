"""The on-disk runtime choice cache: round trip, damage is a miss, a bounded number of entries."""

from __future__ import annotations

import os
from pathlib import Path

from edge.choice_cache import KEEP_ENTRIES, ChoiceCache
from shared.payloads import BenchmarkCandidate, BenchmarkResult


def _result(key: str) -> BenchmarkResult:
    won = BenchmarkCandidate(backend="openvino", device="CPU", variant="model.int8.onnx", precision="int8",
                             inference_precision="bf16", status="chosen", p50_ms=1.0, p99_ms=1.2, agreement=1.0)
    return BenchmarkResult(model="ref", version=2, package_sha256="p" * 64, hardware="hw", runtimes={"openvino": "x"},
                           cache_key=key, measured=True, measured_at=1, chosen=won, candidates=[won])


def test_round_trip_and_a_damaged_or_foreign_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path / "c")
    assert cache.get("k1") is None
    cache.put(_result("k1"))
    assert cache.get("k1") == _result("k1")
    cache.path("k2").write_text("{not json")
    assert cache.get("k2") is None
    cache.path("k3").write_text(_result("other").model_dump_json())
    assert cache.get("k3") is None  # an entry must carry its own key


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path / "c")
    for i in range(KEEP_ENTRIES + 3):
        cache.put(_result(f"k{i}"))
        os.utime(cache.path(f"k{i}"), ns=(i * 10**9, i * 10**9))
    cache.put(_result("last"))
    names = {p.stem for p in (tmp_path / "c").glob("*.json")}
    assert len(names) == KEEP_ENTRIES and "last" in names and "k0" not in names
