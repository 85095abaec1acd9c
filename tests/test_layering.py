"""The tree keeps the data's path: cloud -> shared -> edge -> broker -> fleet -> dashboards, hil and bench on top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cloud", "shared", "edge", "fleet", "dashboards", "hil", "bench", "edgeferry")
# What each package may import of the others (edgeferry/ is the CLI: it may mount everything).
ALLOWED: dict[str, set[str]] = {
    "shared": set(),
    "cloud": {"shared", "edge.backends", "edge.hardware"},
    "edge": {"shared"},
    "fleet": {"shared"},
    "dashboards": {"shared", "fleet"},
    "hil": {"shared", "edge"},
    "bench": {"shared", "edge", "cloud", "fleet", "dashboards", "edgeferry"},
    "edgeferry": set(PACKAGES),
}
HEAVY = ("torch", "lightning", "pytorch_lightning")


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "edgeferry"])
def test_each_package_imports_only_what_the_data_path_allows(package: str) -> None:
    allowed = ALLOWED[package]
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in PACKAGES or top == package:
                continue
            if not any(name == a or name.startswith(a + ".") or a == top for a in allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["edge", "shared", "fleet", "dashboards"])
def test_no_torch_outside_the_trainer(package: str) -> None:
    bad = [f"{p.relative_to(ROOT)} imports {n}" for p in _modules(package) for n in _imports(p)
           if n.split(".")[0] in HEAVY]
    assert not bad, "\n".join(bad)


def test_shared_holds_no_broker_web_or_database_client() -> None:
    bad = [f"{p.relative_to(ROOT)} imports {n}" for p in _modules("shared") for n in _imports(p)
           if n.split(".")[0] in ("paho", "fastapi", "sqlalchemy", "psycopg", "uvicorn")]
    assert not bad, "\n".join(bad)


def test_nothing_imports_hil_or_bench_but_the_cli_and_tests() -> None:
    bad = [f"{p.relative_to(ROOT)} imports {n}" for pkg in PACKAGES if pkg not in ("edgeferry", "hil", "bench")
           for p in _modules(pkg) for n in _imports(p) if n.split(".")[0] in ("hil", "bench")]
    assert not bad, "\n".join(bad)
