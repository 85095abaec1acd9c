"""The sensor trainer's typed config: task, data and window recipe, model, anomaly calibration and gates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.config import ExportConfig, PublishConfig, TrainerConfig
from cloud.sensor.faults import FAULT_KINDS, FaultKind

SensorTask = Literal["sensor-classification", "anomaly"]
SENSOR_TASKS: tuple[str, ...] = ("sensor-classification", "anomaly")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SensorDataConfig(_Section):
    """Where recordings come from and how they are cut into windows."""

    source: Literal["basic_motions", "csv"] = Field(
        default="basic_motions",
        description="'basic_motions': the UEA BasicMotions set shipped inside sktime (offline); 'csv': --data DIR.",
    )
    dir: Path | None = Field(default=None, description="Folder of CSV recordings (one file per recording) for 'csv'.")
    label_column: str = Field(default="label", description="CSV column holding each row's class (classification).")
    labels_file: str = Field(
        default="labels.csv",
        description="In the data folder: 'file,label' lines, used when files have no label column.",
    )
    time_column: str | None = Field(
        default=None, description="CSV column of timestamps in seconds; checked for order and used for the rate."
    )
    sample_rate_hz: float | None = Field(
        default=None, gt=0, description="Readings per second (CSV without a time column needs it; basic_motions: 10)."
    )
    units: dict[str, str] = Field(default_factory=dict, description="Unit per channel name, recorded in the manifest.")
    window: int = Field(default=30, ge=2, le=100_000, description="Readings per window.")
    hop: int = Field(default=5, ge=1, le=100_000, description="A new window every this many readings.")
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="Share of training recordings for validation.")
    test_fraction: float = Field(
        default=0.3, gt=0, lt=0.6, description="Share of recordings held out for test (CSV; basic_motions has its own)."
    )
    batch_size: int = Field(default=32, ge=1, description="Batch size.")


class SensorModelConfig(_Section):
    """Size of the 1-D networks."""

    width: int = Field(default=32, ge=4, le=512, description="Channels of the first convolution.")
    latent: int = Field(default=8, ge=1, le=512, description="Autoencoder bottleneck channels (anomaly).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout before the classifier.")


class AnomalyConfig(_Section):
    """Threshold calibration, injected faults for evaluation, and the anomaly gates."""

    threshold_percentile: float = Field(
        default=99.5, gt=0, lt=100, description="Threshold = this percentile of held-out normal windows' scores."
    )
    feature_percentile: float = Field(
        default=99.5, gt=0, le=100,
        description="Each per-channel feature (reconstruction error, flat share, level, spike) is divided by this "
                    "percentile of it over normal training windows before the graph takes their max.",
    )
    faults: list[FaultKind] = Field(default=list(FAULT_KINDS), min_length=1, description="Fault kinds injected.")
    fault_seed: int = Field(default=7, description="Seed of the fault generator.")
    min_auroc: float = Field(default=0.8, ge=0, le=1, description="Variants below this AUROC are rejected.")
    max_false_alarm_rate: float = Field(
        default=0.02, ge=0, le=1,
        description="Variants whose share of normal test windows over their threshold exceeds this are rejected.",
    )
    max_auroc_drop: float = Field(default=0.02, ge=0, le=1, description="Max AUROC drop of FP16/INT8 vs torch.")
    fp32_max_rel_diff: float = Field(
        default=1e-3, gt=0, le=1, description="Max relative error-score difference of FP32 ONNX vs torch."
    )


class SensorTrainConfig(_Section):
    """Everything `edgeferry train --task sensor-classification|anomaly` needs, saved into the package."""

    task: SensorTask = Field(default="anomaly", description="sensor-classification or anomaly.")
    data: SensorDataConfig = Field(default_factory=SensorDataConfig, description="Recordings and windows.")
    model: SensorModelConfig = Field(default_factory=SensorModelConfig, description="Network size.")
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig, description="Calibration and gates (anomaly).")
    trainer: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(max_epochs=40, lr=3e-3), description="Lightning trainer."
    )
    export: ExportConfig = Field(
        default_factory=lambda: ExportConfig(int8_max_accuracy_drop=0.02, calibration_samples=256),
        description="Variants and classification gates.",
    )
    publish: PublishConfig = Field(
        default_factory=lambda: PublishConfig(name="motions"), description="Package publishing."
    )

    @model_validator(mode="after")
    def _csv_needs_dir(self) -> SensorTrainConfig:
        if self.data.source == "csv" and self.data.dir is None:
            raise ValueError("data.source csv needs data.dir (edgeferry train --data DIR)")
        if self.data.hop > self.data.window:
            raise ValueError(f"data.hop {self.data.hop} is longer than data.window {self.data.window}: readings "
                             "between windows would never be scored")
        return self
