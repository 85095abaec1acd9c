"""What `edgeferry train` prints: no third-party adverts or deprecation noise, and one progress display whose epoch
numbers agree with the log lines (log lines in a pipe or file, a bar on a terminal)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EDGEFERRY = Path(sys.executable).with_name("edgeferry")
NOISE = (
    "litlogger", "Tip:", "LeafSpec", "Loading `train_dataloader`", "TPU available", "fontManager",
    "symbolic shape inference", "Traceback",
)


def train_args(tmp_path: Path) -> list[str]:
    return [
        str(EDGEFERRY), "train", "--no-publish", "--epochs", "2", "--max-samples", "300", "--accelerator", "cpu",
        "--export.precisions=[fp32]", "--export.latency_runs=10", f"--trainer.log_dir={tmp_path / 'runs'}",
        f"--publish.work_dir={tmp_path / 'build'}", f"--publish.dev_key_dir={tmp_path / 'keys'}",
    ]


def env(tmp_path: Path) -> dict[str, str]:
    # A fresh matplotlib config dir, so the font cache is built during the run as on a new machine.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")}
    return {**clean, "MPLCONFIGDIR": str(tmp_path / "mpl"), "COLUMNS": "160"}


def test_piped_output_is_log_lines_with_matching_epochs_and_no_noise(tmp_path: Path) -> None:
    proc = subprocess.run(train_args(tmp_path), capture_output=True, text=True, timeout=600, env=env(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert [n for n in NOISE if n in out] == []
    assert re.findall(r"epoch (\d+/\d+): train_loss=", out) == ["1/2", "2/2"]
    best = re.search(r"best val_acc=\S+ \(epoch (\d+)\)", out)
    assert best is not None and best.group(1) in {"1", "2"}
    assert not re.search(r"Epoch \d+/|it/s", out), "a progress bar was drawn into a pipe"


def test_on_a_terminal_the_bar_is_the_one_display_and_counts_from_1(tmp_path: Path) -> None:
    cmd = shlex.join(train_args(tmp_path))
    proc = subprocess.run(  # script(1) gives the command a pseudo-terminal, as a user's shell does
        ["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=600, env=env(tmp_path)
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert [n for n in NOISE if n in out] == []
    bars = set(re.findall(r"Epoch (\d+/\d+)", out))
    assert bars == {"1/2", "2/2"}, bars
    assert "epoch 1/2: train_loss" not in out, "the log lines repeat what the bar shows"
    assert "v_num" not in out and "train_loss_step" not in out
