"""The source a config names; Capture opens it, so an unreadable source surfaces there as SourceError."""

from __future__ import annotations

from edge.config import (
    CameraSource,
    ImageDirSource,
    SensorCsvSource,
    SensorMqttSource,
    SourceConfig,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
)
from edge.sensor.config import InputCheckConfig
from edge.sources import image_dir, opencv_source, sensor_csv, sensor_mqtt, synthetic
from edge.sources.base import FrameSource


def open_source(cfg: SourceConfig, checks: InputCheckConfig | None = None) -> FrameSource:
    """A not-yet-opened source for the config; the agent keeps a SensorMqttSource to feed it readings.

    `checks` (the config's sensor.input) apply to sensor rows; a model's window recipe is set later (set_recipe).
    """
    if isinstance(cfg, VideoFileSource):
        return opencv_source.OpenCvSource("file", str(cfg.path), loop=cfg.loop)
    if isinstance(cfg, CameraSource):
        return opencv_source.OpenCvSource("camera", opencv_source.camera_target(cfg.device))
    if isinstance(cfg, StreamSource):
        return opencv_source.OpenCvSource("stream", cfg.url)
    if isinstance(cfg, ImageDirSource):
        return image_dir.ImageDirSource(cfg.path, loop=cfg.loop)
    if isinstance(cfg, SyntheticSource):
        return synthetic.SyntheticSource(
            cfg.pattern, height=cfg.height, width=cfg.width, fps=cfg.fps, frames=cfg.frames
        )
    if isinstance(cfg, SensorCsvSource):
        return sensor_csv.SensorCsvSource(cfg.path, window=cfg.window, stride=cfg.stride, checks=checks)
    if isinstance(cfg, SensorMqttSource):
        return sensor_mqtt.SensorMqttSource(cfg.topic, window=cfg.window, stride=cfg.stride, checks=checks)
    raise TypeError(f"unknown source config {type(cfg).__name__}")
