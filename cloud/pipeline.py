"""The cloud job end to end: preflight, train, export and verify, sign, publish."""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.config import TrainConfig
from cloud.errors import GateError, PublishError
from cloud.publish import Published, next_version, preflight_store, publish
from cloud.signing_key import resolve_signing_key
from shared.errors import StoreError
from shared.manifest import Manifest, TrainInfo, utcnow
from shared.object_store import ObjectStore

if TYPE_CHECKING:
    from cloud.export_pipeline import ExportReport
    from cloud.train import TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    """What the job produced (rank 0 only)."""

    manifest: Manifest
    published: Published | None
    package_dir: Path


def frameworks() -> dict[str, str]:
    """Versions that shaped the exported files, recorded in the manifest."""
    out = {"python": platform.python_version()}
    for dist in ("torch", "pytorch-lightning", "onnx", "onnxruntime", "onnxconverter-common", "edgeferry"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """Commit of the training code, when run from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def preflight(cfg: TrainConfig) -> ObjectStore | None:
    """Fail before training, not after: signing key readable, store reachable and writable."""
    if not cfg.publish.enabled:
        return None
    resolve_signing_key(cfg.publish)
    return preflight_store(cfg.publish.store, cfg.publish.name)


def run(cfg: TrainConfig) -> PipelineResult | None:
    """Train on every rank; export, verify and publish on rank 0 after fit has returned."""
    from cloud.data_profile import fit_to_data
    from cloud.export_pipeline import export_and_verify
    from cloud.train import train

    if cfg.task == "detection":  # its own trainer, export and mAP gates (cloud/detection)
        from cloud.detection.pipeline import run_detection

        return run_detection(cfg)
    store = preflight(cfg)
    cfg = fit_to_data(cfg)
    result = train(cfg)
    if not result.is_global_zero:
        return None

    work = cfg.publish.work_dir / cfg.publish.name
    package_dir = work / f"package-{uuid.uuid4().hex[:8]}"
    package_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = export_and_verify(
            model=result.model,
            input_shape=result.input_shape,
            labels=result.labels,
            test_inputs=result.test_inputs,
            test_labels=result.test_labels,
            calib_inputs=result.calib_inputs,
            cfg=cfg.export,
            out_dir=package_dir,
        )
        print(report.summary())
        for r in report.rejected:
            log.warning("not published: %s: %s", r.precision, r.reason)
        if not report.variants:
            raise GateError(
                "no variant passed its gate, nothing published: "
                + "; ".join(f"{r.precision}: {r.reason}" for r in report.rejected)
            )
        if store is not None:
            _gate(cfg, store, result, report)
        _save_eager(result, work)
        version = next_version(store, cfg.publish.name) if store is not None else 1
        manifest = Manifest(
            name=cfg.publish.name,
            version=version,
            created_at=utcnow(),
            frameworks=frameworks(),
            inputs=report.inputs,
            outputs=report.outputs,
            preprocess=result.preprocess,
            labels=result.labels,
            variants=report.variants,
            rejected=report.rejected,
            golden=report.golden,
            train=TrainInfo(
                config=cfg.model_dump(mode="json"),
                dataset=result.dataset,
                metrics={**result.metrics, "torch_test_accuracy": report.torch_accuracy},
                git_commit=git_commit(),
                seed=cfg.trainer.seed,
            ),
        )
        (package_dir / "manifest.preview.json").write_bytes(manifest.to_bytes())
        if store is None:
            log.info("publishing disabled; package files are in %s", package_dir)
            return PipelineResult(manifest, None, package_dir)
        (package_dir / "manifest.preview.json").unlink()
        key, key_path = resolve_signing_key(cfg.publish)
        try:
            published = publish(
                store, package_dir, manifest, key, timedelta(days=cfg.publish.pointer_ttl_days)
            )
        except StoreError as exc:
            raise PublishError(f"publish to {store.uri} failed, latest.json unchanged: {exc}") from exc
        print(
            f"published {published.name} v{published.version} to {published.uri} "
            f"(signed by key {published.key_id} from {key_path}; variants: "
            f"{', '.join(v.precision for v in manifest.variants)})"
        )
        return PipelineResult(manifest, published, package_dir)
    except BaseException:
        shutil.rmtree(package_dir, ignore_errors=True)
        raise


def _gate(cfg: TrainConfig, store: ObjectStore, result: TrainResult, report: ExportReport) -> None:
    """Accuracy floor, then not worse than the published version on the same split; GateError refuses."""
    from cloud.publish_gate import check_floor, check_not_worse, published_incumbent

    fp32 = next((v for v in report.variants if v.precision == "fp32"), None)
    new = fp32.metrics.accuracy if fp32 is not None else report.torch_accuracy
    if new is None:
        return  # not a classifier: its own gates decided
    name, samples = cfg.publish.name, len(result.test_labels)
    check_floor(name, new, cfg.publish.min_accuracy, samples)
    if not cfg.publish.compare_published:
        return
    key, _ = resolve_signing_key(cfg.publish)
    incumbent = published_incumbent(store, name, [key.public_key()], result.labels, result.preprocess,
                                    result.test_inputs, result.test_labels)
    check_not_worse(name, new, incumbent, cfg.publish.max_accuracy_drop, samples)


def _save_eager(result: object, work: Path) -> None:
    """Keep the torch weights beside the package (not published) so benchmarks can time eager torch."""
    import torch

    model = result.model  # type: ignore[attr-defined]
    torch.save(
        {"state_dict": model.state_dict(), "arch": getattr(model, "arch_config", None),
         "input_shape": result.input_shape, "num_classes": len(result.labels)},  # type: ignore[attr-defined]
        work / "model.pt",
    )
