"""Both generated dashboards type-check as Grafana's own `Dashboard` type (@grafana/schema from npm, tsc --strict).

The packages are installed once into .cache/grafana-schema (gitignored). Without Node/npm, or when npm cannot
install them, the test FAILS with one line saying why; it never passes without having run the compiler.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboards.grafana import device_dashboard, grafana_dashboard

pytestmark = pytest.mark.slow

# The dashboard JSON model (v1, schemaVersion 39) as Grafana 13 still types it; bump together.
PACKAGES = ("@grafana/schema@13.2.3", "typescript@7.0.2")
CACHE = Path(os.environ.get("EDGEFERRY_GRAFANA_SCHEMA_DIR", ".cache/grafana-schema")).resolve()
TSC_ARGS = ("--noEmit", "--strict", "--module", "esnext", "--moduleResolution", "bundler", "--target", "es2022")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"Grafana schema check did not run: `{name}` is not on PATH (apt-get install -y nodejs npm)")
    return path


def tsc() -> Path:
    """tsc from a cache dir holding the pinned packages; installed once (reinstalled when the pins change)."""
    _tool("node")
    marker = CACHE / (".installed-" + "-".join(p.replace("/", "_") for p in PACKAGES))
    binary = CACHE / "node_modules" / ".bin" / "tsc"
    if marker.exists() and binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "package.json").write_text('{"name": "edgeferry-grafana-schema-check", "private": true}\n')
    install = subprocess.run(
        [_tool("npm"), "install", "--no-audit", "--no-fund", "--no-save", *PACKAGES],
        cwd=CACHE, capture_output=True, text=True, check=False, timeout=300,
    )
    if install.returncode != 0 or not binary.exists():
        last = (install.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"Grafana schema check did not run: npm install {' '.join(PACKAGES)} failed "
                    f"(is the npm registry reachable?): {last}")
    marker.write_text("\n".join(PACKAGES) + "\n")
    return binary


def typecheck(dashboards: dict[str, dict[str, object]]) -> subprocess.CompletedProcess[str]:
    """Write one .ts per dashboard that assigns its JSON to a `Dashboard`, and compile them."""
    binary = tsc()
    names = []
    for name, dash in dashboards.items():
        path = CACHE / f"{name}.ts"
        path.write_text('import type { Dashboard } from "@grafana/schema";\n\n'
                        f"export const dashboard: Dashboard = {json.dumps(dash, indent=1)};\n")
        names.append(path.name)
    return subprocess.run([str(binary), *TSC_ARGS, *names], cwd=CACHE, capture_output=True, text=True,
                          check=False, timeout=300)


def test_both_dashboards_are_grafana_dashboards_by_grafanas_own_types() -> None:
    result = typecheck({"fleet": grafana_dashboard(), "device": device_dashboard()})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_dashboard_grafana_would_not_accept() -> None:
    bad = grafana_dashboard()
    bad["schemaVersion"] = "39"
    bad["templating"]["list"][0]["type"] = "datasources"  # type: ignore[index]
    result = typecheck({"bad": bad})
    assert result.returncode != 0
    assert "'string' is not assignable to type 'number'" in result.stdout
    assert "is not assignable to type 'VariableType'" in result.stdout
