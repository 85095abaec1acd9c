"""The shipped Grafana dashboard is the one the metric table generates (regenerate: edgeferry dashboards)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dashboards.grafana import grafana_dashboard
from edgeferry.cli import app


def test_shipped_dashboard_matches_the_metric_table() -> None:
    shipped = json.loads(Path("deploy/grafana/edgeferry-fleet.json").read_text())
    assert shipped == grafana_dashboard(), "run `edgeferry dashboards` after changing shared/metrics.py"


def test_the_dashboards_command_writes_the_generated_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboards", "--out", str(tmp_path / "grafana")])
    assert result.exit_code == 0, result.output
    written = tmp_path / "grafana" / "edgeferry-fleet.json"
    assert json.loads(written.read_text()) == grafana_dashboard()
    # The per-device dashboard beside it, and no temporary file left.
    assert sorted(p.name for p in written.parent.iterdir()) == ["edgeferry-device.json", "edgeferry-fleet.json"]
