"""The metric table is enough to derive every view: short titles, declared units, lint-clean Prometheus names."""

from __future__ import annotations

import re

from shared.metrics import HISTOGRAMS, LATENCY_BUCKETS_S, METRICS, UNITS


def test_every_metric_has_a_short_title_of_its_own() -> None:
    missing = [m.name for m in METRICS if not m.title]
    assert missing == [], f"give these rows a title= in shared/metrics.py: {missing}"
    long = [m.title for m in METRICS if len(m.title) > 32]
    assert long == []
    assert len({m.title for m in METRICS}) == len(METRICS)


def test_every_unit_is_declared_with_its_prometheus_conversion() -> None:
    assert [m.name for m in METRICS if m.unit not in UNITS] == []
    assert UNITS["ms"].factor == 1e-3 and UNITS["MiB"].factor == 1048576 and UNITS["%"].factor == 0.01


def test_prometheus_names_use_base_units_and_no_abbreviations() -> None:
    names = [m.prometheus_name for m in METRICS] + [h.prometheus_name for h in HISTOGRAMS]
    assert len(set(names)) == len(names)
    for m in METRICS:
        assert re.fullmatch(r"edgeferry_[a-z0-9_]+", m.prometheus_name), m.name
        assert not re.search(r"_(ms|mb|pct|s|c)(_|$)", m.prometheus_name), m.prometheus_name
        assert m.prometheus_name.endswith("_total") == (m.kind == "counter")
        base = m.unit_info.base
        if base:
            assert m.prometheus_name.removesuffix("_total").endswith(f"_{base}"), m.name


def test_latency_buckets_ascend() -> None:
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S)) and LATENCY_BUCKETS_S[0] > 0
