"""The detection section of the training config: scenes, network size, decode and the mAP gate budget."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DetectionConfig(BaseModel):
    """Options used when task is detection; the data/trainer/export/publish sections apply as for classifiers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    image_size: tuple[int, int] = Field(
        default=(128, 128), description="Model input (height, width); multiples of 16. User images are letterboxed."
    )
    pad_value: int = Field(default=114, ge=0, le=255, description="Letterbox padding value for user images.")
    width: int = Field(default=16, ge=4, le=128, description="Channels of the first backbone stage.")
    top_k: int = Field(default=50, ge=1, le=1000, description="Detections the in-graph decode keeps per image.")
    max_objects: int = Field(default=16, ge=1, le=1000, description="Objects per image used as training targets.")
    train_scenes: int = Field(default=4000, ge=8, description="Synthetic training scenes per epoch (seeded).")
    fresh_scenes: bool = Field(
        default=True, description="Synthetic data: new seeded training scenes every epoch instead of one fixed set.",
    )
    train_budget_s: float | None = Field(
        default=None, gt=0,
        description="Wall-clock seconds of training at most; the learning rate anneals on time when it binds.",
    )
    train_budget_cpu_s: float | None = Field(
        default=None, gt=0,
        description="CPU-seconds of the training process and its loader workers at most (2 cores x 280 s = 560); "
        "the same work on a busy machine as on an idle one, where wall-clock budgets cut training short.",
    )
    train_precision: Literal["auto", "32-true", "bf16-mixed"] = Field(
        default="auto", description="auto: bf16 autocast on a CPU with native bf16, else trainer.precision.",
    )
    loader_workers: int = Field(default=0, ge=0, le=16, description="Processes generating fresh training scenes.")
    val_scenes: int = Field(default=200, ge=4, description="Synthetic validation scenes.")
    test_scenes: int = Field(default=500, ge=4, description="Synthetic held-out test scenes (mAP gates).")
    min_objects: int = Field(default=1, ge=0, le=20, description="Fewest objects in a synthetic scene.")
    max_objects_per_scene: int = Field(default=4, ge=1, le=20, description="Most objects in a synthetic scene.")
    min_scale: int = Field(default=16, ge=6, description="Smallest object side in a synthetic scene, pixels.")
    max_scale: int = Field(default=44, ge=6, description="Largest object side in a synthetic scene, pixels.")
    noise: float = Field(default=8.0, ge=0, le=64, description="Std of pixel noise in synthetic scenes.")
    map_drop_budget: float = Field(
        default=0.015, ge=0, le=1,
        description="Largest mAP@.5:.95 drop (0-1 scale; 0.015 = 1.5 points) of a variant from the torch model.",
    )
    score_threshold: float = Field(default=0.3, ge=0, le=1, description="Device default score threshold (manifest).")
    eval_batch: int = Field(default=64, ge=1, description="Batch size when scoring splits.")
