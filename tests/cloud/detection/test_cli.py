"""`edgeferry train --task detection --data DIR` refuses a malformed COCO file in one line and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cloud.detection.test_coco import write_set

EDGEFERRY = Path(sys.executable).with_name("edgeferry")


def test_malformed_coco_labels_stop_the_job_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    doc = write_set(data)
    doc["annotations"][2]["bbox"] = [5, 5, 10]
    (data / "annotations.json").write_text(json.dumps(doc))
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")}
    proc = subprocess.run(
        [str(EDGEFERRY), "train", "--task", "detection", "--data", str(data), "--store", str(store),
         "--name", "mine", f"--trainer.log_dir={tmp_path / 'runs'}", f"--publish.work_dir={tmp_path / 'build'}",
         f"--publish.dev_key_dir={tmp_path / 'keys'}"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert str(data / "annotations.json") in errors[0] and "annotation #2" in errors[0]
    assert not (tmp_path / "runs").exists() and not list((tmp_path / "build").rglob("*.onnx"))
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
