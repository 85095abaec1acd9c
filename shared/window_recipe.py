"""The manifest's sensor window recipe: how a device cuts a stream of readings into the model's [C, T] windows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.names import check_ident


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorChannel(_Strict):
    """One column of a reading, in the order a device's rows carry them."""

    name: str = Field(description="Channel name, e.g. 'acc_x'.")
    unit: str = Field(default="", description="Unit the raw readings are in, e.g. 'g' or 'rad/s' (before mean/std).")


class WindowRecipe(_Strict):
    """Sample rate, window length, hop, channel order/units and per-channel mean/std: one recipe, both sides."""

    sample_rate_hz: float = Field(gt=0, le=1e6, description="Readings per second the model was trained on.")
    window: int = Field(ge=2, le=1_000_000, description="Readings per window (T of the [C, T] input).")
    hop: int = Field(ge=1, le=1_000_000, description="A new window every this many readings.")
    channels: list[SensorChannel] = Field(min_length=1, description="Channel order and units of a reading row.")
    mean: list[float] = Field(description="Per-channel mean subtracted from raw readings.")
    std: list[float] = Field(description="Per-channel std the centred readings are divided by.")
    layout: Literal["NCT"] = Field(default="NCT", description="Input tensor layout: batch, channel, time.")

    @model_validator(mode="after")
    def _consistent(self) -> WindowRecipe:
        n = len(self.channels)
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"mean and std need one value per channel ({n}), got {len(self.mean)} and {len(self.std)}")
        if any(not (s > 0 and s < float("inf")) for s in self.std):
            raise ValueError("std values must be positive and finite")
        if any(m != m or abs(m) == float("inf") for m in self.mean):
            raise ValueError("mean values must be finite")
        names = [c.name for c in self.channels]
        for name in names:
            check_ident(name, "channel name")
        if len(set(names)) != n:
            raise ValueError("channel names must be unique")
        return self

    @property
    def num_channels(self) -> int:
        """C of the [C, T] input."""
        return len(self.channels)

    @property
    def hop_seconds(self) -> float:
        """Seconds between two windows' starts."""
        return self.hop / self.sample_rate_hz

    @property
    def windows_per_hour(self) -> float:
        """Windows a device scores in an hour of readings at the recorded rate."""
        return 3600.0 / self.hop_seconds
