"""Training launchers: torchrun really starts a 2-rank job; the SLURM and Kubeflow files are well-formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = ROOT / "deploy" / "train"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_torchrun_launcher_trains_on_two_ranks(tmp_path: Path) -> None:
    config = {
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "progress_bar": False, "log_dir": str(tmp_path / "runs")},
        "data": {"max_samples": 200, "batch_size": 32},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env = _env(
        NPROC_PER_NODE="2", NNODES="1", NODE_RANK="0", MASTER_PORT=str(free_port()), PYTHON=sys.executable,
        TRAIN_MODULE="cloud.train", TRAIN_COMMAND="",
    )
    proc = subprocess.run(
        ["bash", str(LAUNCHERS / "torchrun.sh"), "--config", "train.yaml", "--result", "result-{rank}.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "rank 0 of 2 finished training" in output and "rank 1 of 2 finished training" in output
    assert sorted(p.name for p in tmp_path.glob("result-*.json")) == ["result-0.json"]
    assert json.loads((tmp_path / "result-0.json").read_text())["world_size"] == 2


def test_torchrun_launcher_refuses_a_node_rank_outside_the_job(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(LAUNCHERS / "torchrun.sh")], cwd=tmp_path, env=_env(NNODES="2", NODE_RANK="2"),
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "NODE_RANK=2 must be below NNODES=2" in proc.stderr


def test_slurm_script_is_valid_bash_with_one_task_per_device() -> None:
    script = LAUNCHERS / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "#SBATCH --ntasks-per-node=" in text
    assert 'srun --kill-on-bad-exit=1 "$EDGEFERRY" train' in text
    assert '--devices "$TASKS_PER_NODE" --num-nodes "$NODES" --strategy ddp' in text


def test_pytorchjob_has_master_and_workers_running_the_torchrun_launcher() -> None:
    job = yaml.safe_load((LAUNCHERS / "pytorchjob.yaml").read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] >= 1
    for role in ("Master", "Worker"):
        (container,) = replicas[role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["command"] == ["deploy/train/torchrun.sh"]
        assert (ROOT / container["command"][0]).is_file()
    gpus = replicas["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert str(gpus) == job["spec"]["nprocPerNode"]
