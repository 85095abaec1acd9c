"""The shipped Grafana dashboard is the one the metric table generates (regenerate: edgeferry dashboards)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.dashboard_views import grafana_dashboard


def test_shipped_dashboard_matches_the_metric_table() -> None:
    shipped = json.loads(Path("deploy/grafana/edgeferry-fleet.json").read_text())
    assert shipped == grafana_dashboard(), "run `edgeferry dashboards` after changing shared/metrics.py"
