"""The detection job end to end: preflight, train, export and gate on mAP, sign and publish like the classifier."""

from __future__ import annotations

import logging
import shutil
import uuid
from datetime import timedelta

import torch

from cloud.config import TrainConfig
from cloud.detection.export import export_detection, head_spec
from cloud.detection.train import train_detector
from cloud.errors import GateError, PublishError
from cloud.pipeline import PipelineResult, frameworks, git_commit, preflight
from cloud.publish import next_version, publish
from cloud.signing_key import resolve_signing_key
from shared.errors import StoreError
from shared.manifest import Manifest, TrainInfo, utcnow

log = logging.getLogger(__name__)


def run_detection(cfg: TrainConfig) -> PipelineResult:
    """Train on one process, then export, gate, and publish only variants within the mAP budget."""
    store = preflight(cfg)
    result = train_detector(cfg)
    work = cfg.publish.work_dir / cfg.publish.name
    package_dir = work / f"package-{uuid.uuid4().hex[:8]}"
    package_dir.mkdir(parents=True, exist_ok=True)
    try:
        data = result.data
        report = export_detection(result.model, data.classes, data.test, result.test_inputs, result.calib_inputs,
                                  cfg.export, cfg.detection, package_dir)
        print(report.summary())
        if not report.variants:
            raise GateError("no variant passed its mAP gate, nothing published: "
                            + "; ".join(f"{r.precision}: {r.reason}" for r in report.rejected))
        torch.save({"state_dict": result.model.net.state_dict(), "arch": result.model.net.arch_config,
                    "top_k": result.model.top_k, "input_hw": list(result.model.input_hw)}, work / "model.pt")
        version = next_version(store, cfg.publish.name) if store is not None else 1
        manifest = Manifest(
            name=cfg.publish.name, version=version, created_at=utcnow(), task="detection",
            head=head_spec(cfg.detection), frameworks=frameworks(), inputs=report.inputs, outputs=report.outputs,
            preprocess=data.preprocess, labels=data.classes, variants=report.variants, rejected=report.rejected,
            golden=report.golden,
            train=TrainInfo(
                config=cfg.model_dump(mode="json"), dataset=data.info,
                metrics={**result.metrics, "torch_test_map50": report.torch_scores.map50,
                         "torch_test_map50_95": report.torch_scores.map50_95},
                git_commit=git_commit(), seed=cfg.trainer.seed,
            ),
        )
        if store is None:
            (package_dir / "manifest.preview.json").write_bytes(manifest.to_bytes())
            log.info("publishing disabled; package files are in %s", package_dir)
            return PipelineResult(manifest, None, package_dir)
        key, key_path = resolve_signing_key(cfg.publish)
        try:
            published = publish(store, package_dir, manifest, key, timedelta(days=cfg.publish.pointer_ttl_days))
        except StoreError as exc:
            raise PublishError(f"publish to {store.uri} failed, latest.json unchanged: {exc}") from exc
        print(f"published {published.name} v{published.version} to {published.uri} (signed by key "
              f"{published.key_id} from {key_path}; variants: {', '.join(v.precision for v in manifest.variants)})")
        return PipelineResult(manifest, published, package_dir)
    except BaseException:
        shutil.rmtree(package_dir, ignore_errors=True)
        raise
