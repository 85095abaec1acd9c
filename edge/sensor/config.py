"""The `sensor:` section of the agent config: anomaly alert rule, input checks on sensor rows.

A signed set-config applies `alerts` live (the served model's rule restarts); `input` needs a restart, since the
source checks rows with it from the start (edge.live_config).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AlertConfig(_Section):
    """When anomaly scores become an alert: k of the last n windows over the threshold, then a cooldown."""

    k: int = Field(default=3, ge=1, le=1000, description="Windows over the threshold (among the last n) that fire.")
    n: int = Field(default=5, ge=1, le=1000, description="Windows the rule looks back over.")
    clear_windows: int = Field(
        default=0, ge=0, le=1000,
        description="An alert ends once this many windows in a row are under the threshold; 0: n windows.",
    )
    cooldown_s: float = Field(
        default=30.0, ge=0, le=86_400,
        description="After an alert ends, a new one on the same stream waits this long (stream time, seconds).",
    )
    threshold: float | None = Field(
        default=None, gt=0, le=1e12,
        description="Override the model's calibrated threshold (the variant's metrics.threshold, else the head's).",
    )
    top_channels: int = Field(default=3, ge=1, le=16, description="Channels an alert names as contributing most.")

    @model_validator(mode="after")
    def _k_within_n(self) -> AlertConfig:
        if self.k > self.n:
            raise ValueError(f"sensor.alerts.k ({self.k}) cannot exceed sensor.alerts.n ({self.n})")
        return self

    @property
    def clear_after(self) -> int:
        """Windows in a row under the threshold that end an alert."""
        return self.clear_windows or self.n


class InputCheckConfig(_Section):
    """How sensor rows are checked before they are windowed; a refused row restarts the window (never spans it)."""

    timestamp_column: bool = Field(
        default=False,
        description="Each row starts with its reading time in seconds; then order, gaps and rate are checked.",
    )
    rate_tolerance: float = Field(
        default=0.2, gt=0, le=10,
        description="A window whose timestamps give a rate more than this share away from the model's "
        "sample_rate_hz is dropped and counted.",
    )
    max_gap_periods: float = Field(
        default=3.0, ge=1.5, le=1e6,
        description="A step between two rows longer than this many sample periods is a gap (missing rows): "
        "the window restarts after it.",
    )
    burst_report_s: float = Field(
        default=10.0, ge=0.1, le=3600,
        description="A run of malformed input is logged in one line when it ends, or this often while it lasts.",
    )


class SensorConfig(_Section):
    """Sensor models: the anomaly alert rule and the checks on incoming rows."""

    alerts: AlertConfig = Field(default_factory=AlertConfig, description="Anomaly alert rule.")
    input: InputCheckConfig = Field(default_factory=InputCheckConfig, description="Checks on incoming sensor rows.")
