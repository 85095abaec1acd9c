"""The sensor job end to end: load and check recordings, train, export and gate, sign, publish."""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cloud.config import PublishConfig
from cloud.errors import GateError, PublishError
from cloud.pipeline import frameworks, git_commit
from cloud.publish import Published, next_version, preflight_store, publish
from cloud.sensor.config import SensorTrainConfig
from cloud.sensor.export import SensorExport, export_sensor
from cloud.sensor.train import SensorTrainResult, load_sensor_data, train_sensor
from shared.errors import StoreError
from shared.manifest import Manifest, TrainInfo, utcnow
from shared.object_store import ObjectStore
from shared.task_contract import ClassificationHeadSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensorPipelineResult:
    """What the job produced."""

    manifest: Manifest
    published: Published | None
    package_dir: Path
    export: SensorExport
    train: SensorTrainResult


def _preflight(cfg: PublishConfig) -> ObjectStore | None:
    """Fail before training: signing key readable, store reachable and writable."""
    from cloud.signing_key import resolve_signing_key

    if not cfg.enabled:
        return None
    resolve_signing_key(cfg)
    return preflight_store(cfg.store, cfg.name)


def build_manifest(cfg: SensorTrainConfig, version: int, result: SensorTrainResult, report: SensorExport
                   ) -> Manifest:
    """The manifest: task and head, the window recipe instead of an image preprocess, gated variants."""
    if cfg.task == "anomaly":
        assert report.head is not None
        task, head = "anomaly", report.head.model_dump()
    else:
        task, head = "classification", ClassificationHeadSpec().model_dump()
    assert report.golden is not None
    return Manifest.model_validate({
        "name": cfg.publish.name, "version": version, "created_at": utcnow(), "task": task, "head": head,
        "frameworks": frameworks(), "inputs": report.inputs, "outputs": report.outputs, "window": result.recipe,
        "labels": result.labels, "variants": report.variants, "rejected": report.rejected, "golden": report.golden,
        "train": TrainInfo(
            config=cfg.model_dump(mode="json"), dataset=result.dataset,
            metrics={**result.metrics, **{f"torch_{k}": v for k, v in report.reference.items()}},
            git_commit=git_commit(), seed=cfg.trainer.seed,
        ),
    })


def run_sensor(cfg: SensorTrainConfig) -> SensorPipelineResult:
    """Refuse bad data before anything is written; publish only variants within their gates."""
    data = load_sensor_data(cfg)
    store = _preflight(cfg.publish)
    result = train_sensor(cfg, data)
    package_dir = cfg.publish.work_dir / cfg.publish.name / f"package-{uuid.uuid4().hex[:8]}"
    try:
        anomaly = result.anomaly
        report = export_sensor(
            cfg.task, result.model, result.input_shape, result.labels, result.test.inputs, result.test.labels,
            result.val.inputs, result.calib_inputs, anomaly, cfg.export, cfg.anomaly, package_dir,
        )
        print(report.summary())
        if not report.variants:
            raise GateError("no variant passed its gate, nothing published: "
                            + "; ".join(f"{r.precision}: {r.reason}" for r in report.rejected))
        version = next_version(store, cfg.publish.name) if store is not None else 1
        manifest = build_manifest(cfg, version, result, report)
        if store is None:
            (package_dir / "manifest.preview.json").write_bytes(manifest.to_bytes())
            log.info("publishing disabled; package files are in %s", package_dir)
            return SensorPipelineResult(manifest, None, package_dir, report, result)
        from cloud.signing_key import resolve_signing_key

        key, key_path = resolve_signing_key(cfg.publish)
        try:
            published = publish(store, package_dir, manifest, key, timedelta(days=cfg.publish.pointer_ttl_days))
        except StoreError as exc:
            raise PublishError(f"publish to {store.uri} failed, latest.json unchanged: {exc}") from exc
        print(f"published {published.name} v{published.version} ({manifest.task}) to {published.uri} "
              f"(signed by key {published.key_id} from {key_path}; variants: "
              f"{', '.join(v.precision for v in manifest.variants)})")
        return SensorPipelineResult(manifest, published, package_dir, report, result)
    except BaseException:
        shutil.rmtree(package_dir, ignore_errors=True)
        raise
