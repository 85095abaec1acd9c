"""Wire contract of sensor anomaly alerts: one `new` when k of the last n windows exceed the threshold, one `end`.

Topic (beside the classification `events`, whose readers expect EventPayload):
  edgeferry/<fleet>/<device>/sensor/alerts     AnomalyAlertPayload per alert start (new) and clear (end)
Like every device-sent payload, each field is bounded: finite numbers, short clean strings, capped lists.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.payload_limits import Ident, Label, Token, UInt64
from shared.payloads import Envelope
from shared.streams import DEFAULT_STREAM
from shared.topics import DeviceTopics

# Reconstruction errors are normalized-unit squared errors: a bound keeps sums and charts finite.
MAX_SCORE = 1e12
MAX_CHANNELS = 16
MAX_WINDOWS = 1000
AlertType = Literal["new", "end"]
Score = Annotated[float, Field(ge=0.0, le=MAX_SCORE)]


class ChannelContribution(BaseModel):
    """One channel among those that contributed most to an alert's score (manifest window channel names)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    channel: Ident = Field(description="Channel name, as in the model's window recipe.")
    error: Score = Field(description="That channel's reconstruction error in the alert's worst window.")


class AnomalyAlertPayload(Envelope):
    """An anomaly alert started (new: k of the last n windows were over the threshold) or cleared (end)."""

    type: AlertType = Field(description="Lifecycle step.")
    alert_id: Token = Field(description="Alert id, unique per device: '<start ms>-<alerts since boot>'.")
    stream: Label = Field(
        default=DEFAULT_STREAM,
        description="Where the windows came from: the stream's name under `streams:`, else the source, e.g. "
        "'sensor_mqtt:plant/line1'.",
    )
    score: Score = Field(description="Score of the latest window (new: the one that fired; end: the one that cleared).")
    peak_score: Score = Field(description="Highest window score since the alert started.")
    threshold: Score = Field(description="Threshold the scores were compared with.")
    channels: list[ChannelContribution] = Field(
        max_length=MAX_CHANNELS, description="Channels of the worst window, largest error first."
    )
    windows_over: int = Field(ge=0, le=MAX_WINDOWS, description="Windows over the threshold among the last n.")
    k: int = Field(ge=1, le=MAX_WINDOWS, description="Windows over the threshold that fire an alert.")
    n: int = Field(ge=1, le=MAX_WINDOWS, description="Windows the rule looks back over.")
    started_ms: UInt64 = Field(description="Time of the window that fired the alert, Unix ms.")
    end_ms: UInt64 | None = Field(default=None, description="Time of the window that cleared it (end only), Unix ms.")
    window: UInt64 = Field(description="Index of the latest window in its stream.")
    model_version: UInt64 | None = Field(default=None, description="Model version that scored the windows.")

    @model_validator(mode="after")
    def _consistent(self) -> AnomalyAlertPayload:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n})")
        if self.windows_over > self.n:
            raise ValueError(f"windows_over ({self.windows_over}) cannot exceed n ({self.n})")
        if (self.type == "end") != (self.end_ms is not None):
            raise ValueError("end_ms is set on end events and only on them")
        if self.peak_score < self.score:
            raise ValueError("peak_score is below the latest score")
        return self


class SensorTopics:
    """Sensor topics of one device, under its DeviceTopics base."""

    def __init__(self, device: DeviceTopics) -> None:
        self.alerts = f"{device.base}/sensor/alerts"
