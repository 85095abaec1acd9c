"""The agent's typed config tree; every field is also an EDGEFERRY_* variable and a flag."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge.detection.config import DetectionConfig, ZoneConfig
from edge.sensor.config import SensorConfig
from edge.served_models import check_served_models
from shared.names import check_ident
from shared.payloads import MAX_MODELS
from shared.store_config import StoreConfig
from shared.streams import DEFAULT_STREAM, MAX_STREAMS, check_stream_name, check_unique_streams


class _Section(BaseModel):
    # inf and nan pass `gt=0` and then break timers and sleeps deep inside a thread: refuse them everywhere.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _default_device_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64].strip("-")
    return host or "device"


class DeviceConfig(_Section):
    """Who this device is on the broker."""

    fleet: str = Field(default="default", description="Fleet name (topic level 2).")
    device_id: str = Field(default_factory=_default_device_id, description="Device id (topic level 3).")
    groups: list[str] = Field(
        default_factory=list, description="Groups this device belongs to; a signed command may target one of them."
    )
    command_keys: list[Path] = Field(
        default_factory=list,
        description="ed25519 public keys (PEM) whose signed commands this device accepts; local config only.",
    )
    allow_unsigned_commands: bool = Field(
        default=False, description="Accept unsigned commands from anyone who can publish (development only)."
    )
    command_state_path: Path = Field(
        default=Path(".edge-cache/command-seq.json"),
        description="Last accepted command sequence per key, kept across restarts so commands cannot be replayed.",
    )

    _ids = field_validator("fleet", "device_id")(lambda cls, v: check_ident(v, "fleet or device id"))
    _groups = field_validator("groups")(lambda cls, v: [check_ident(g, "device group") for g in v])


class SyncConfig(_Section):
    """Where models come from and how they are verified and cached."""

    model: str = Field(default="digits", description="Model name to follow.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Store to pull from (read-only is enough).")
    poll_interval_s: float = Field(
        default=30.0, ge=0.1, le=86_400, description="How often to poll latest.json (or the channel), seconds."
    )
    follow: Literal["auto", "latest", "desired"] = Field(
        default="auto",
        description="What moves this device to a new version. 'latest': the signed pointer of sync.channel (a "
        "device without a control plane; a desired state still pins it while one is in force). 'desired': only "
        "the fleet's signed desired state, a deploy command or sync.pinned_version; publishing moves nothing. "
        "'auto': 'latest' until this device has applied a signed desired state (kept in device.command_state_path's "
        "folder, across restarts), 'desired' from then on, also after that state is cleared.",
    )
    channel: str = Field(
        default="stable",
        description="Pointer followed in 'latest' mode: 'stable' is models/<name>/latest.json (what every publish "
        "moves); another name reads models/<name>/channels/<name>.json ('edgeferry publish-pointer --channel').",
    )
    pinned_version: int | None = Field(default=None, ge=1, description="Serve this version and ignore latest.")
    cache_dir: Path = Field(default=Path(".edge-cache"), description="Installed versions live here.")
    keep_versions: int = Field(default=3, ge=2, le=100, description="Installed versions kept for rollback.")
    trusted_keys: list[Path] = Field(default_factory=list, description="ed25519 public keys (PEM) to trust.")
    allow_unsigned: bool = Field(default=False, description="Accept packages without a signature (unsafe).")
    download_attempts: int = Field(default=5, ge=1, le=100, description="Attempts per file before giving up.")
    backoff_s: float = Field(
        default=0.5, ge=0.01, le=300, description="First retry delay, seconds; doubles per attempt."
    )
    variant: Literal["auto", "tensorrt", "cuda-fp16", "int8", "fp32", "fp16"] = Field(
        default="auto", description="Variant choice: auto by hardware, or forced."
    )
    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1, description="Max accuracy drop vs best variant.")
    benchmark_on_install: bool = Field(default=False, description="Time candidate variants and take the fastest.")
    shadow_every: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Rollout shadow check: while a newer version is served and the one it replaced is still "
        "installed, also run that previous version on every Nth frame (off the frame thread) and report top-1 "
        "agreement as shadow_agreement/shadow_frames; None: off.",
    )
    shadow_canary_budget_ms: float | None = Field(
        default=10.0, gt=0, le=60_000,
        description="With shadow_every unset: while a rollout's desired state marks this device a canary, run the "
        "shadow check every shadow_canary_every frames when the previous version's measured run time on this "
        "device (median of 3 runs on the first sampled frame) is at most this many ms; a model over it is not run "
        "as the shadow. None: only shadow_every turns the shadow check on.",
    )
    shadow_canary_every: int = Field(
        default=2, ge=1, le=1_000_000,
        description="Every how many frames a canary runs the shadow check it turned on by its cost budget.",
    )
    target: str | None = Field(
        default=None,
        description="Named hardware target of this device (e.g. jetson-orin-nano): serve the signed runtime choice "
        "'edgeferry bench --target' recorded for it when its hardware fingerprint and runtime versions match this "
        "device exactly (after the smoke test and hint gate), instead of measuring; None: always measure here.",
    )
    smoke_min_agreement: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Share of golden samples whose top-1 an fp16/int8/TensorRT variant must match (fp32: all).",
    )
    detection_min_agreement: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Detection F1 (IoU >= 0.5, same class) a detector's variant, runtime or inference hint must "
        "reach against the FP32 reference boxes on the golden samples before it serves.",
    )
    min_free_mb: float = Field(
        default=64.0, ge=0, le=1_000_000, description="Free space (MiB) a download must leave in cache_dir."
    )
    retry_max_s: float = Field(
        default=3600.0,
        ge=1,
        le=86_400,
        description="Longest wait, seconds, before polling retries a version whose store objects failed.",
    )

    _target = field_validator("target")(lambda cls, v: v if v is None else check_ident(v, "target name"))
    _channel = field_validator("channel")(lambda cls, v: check_ident(v, "channel name"))


class _SourceBase(_Section):
    queue_size: int = Field(default=4, ge=1, le=1024, description="Capture queue length.")
    policy: Literal["latest", "all"] = Field(
        default="latest", description="'latest' drops stale frames (counted); 'all' keeps every frame."
    )
    max_fps: float | None = Field(default=None, ge=0.01, le=10_000, description="Cap the capture rate.")
    reconnect_backoff_s: float = Field(
        default=0.5, ge=0.01, le=30, description="First reconnect delay, seconds; doubles up to reconnect_max_s."
    )
    reconnect_max_s: float = Field(
        default=10.0, ge=0.01, le=3600,
        description="Longest reconnect delay, seconds: a camera that comes back is read again within this long.",
    )

    @model_validator(mode="after")
    def _backoff_within_max(self) -> _SourceBase:
        if self.reconnect_max_s < self.reconnect_backoff_s:
            raise ValueError(f"reconnect_max_s {self.reconnect_max_s} is below reconnect_backoff_s "
                             f"{self.reconnect_backoff_s}; raise reconnect_max_s or lower the first delay")
        return self


class VideoFileSource(_SourceBase):
    """A video file decoded by OpenCV/FFmpeg."""

    type: Literal["video_file"] = Field(default="video_file", description="Discriminator selecting this kind.")
    path: Path = Field(description="Video file path.")
    loop: bool = Field(default=False, description="Restart at the end.")


class CameraSource(_SourceBase):
    """A V4L2 camera."""

    type: Literal["camera"] = Field(default="camera", description="Discriminator selecting this kind.")
    device: str = Field(default="0", description="/dev/videoN or an index.")


class StreamSource(_SourceBase):
    """An RTSP or HTTP stream."""

    type: Literal["stream"] = Field(default="stream", description="Discriminator selecting this kind.")
    url: str = Field(description="rtsp:// or http(s):// stream URL.")


class ImageDirSource(_SourceBase):
    """Images in a directory, sorted by name."""

    type: Literal["image_dir"] = Field(default="image_dir", description="Discriminator selecting this kind.")
    path: Path = Field(description="Directory of jpg/png images.")
    loop: bool = Field(default=False, description="Restart at the end.")


class SyntheticSource(_SourceBase):
    """A generated test pattern, for demos and benchmarks without a camera."""

    type: Literal["synthetic"] = Field(default="synthetic", description="Discriminator selecting this kind.")
    width: int = Field(default=64, ge=8, le=8192, description="Frame width.")
    height: int = Field(default=64, ge=8, le=8192, description="Frame height.")
    fps: float | None = Field(default=30.0, ge=0.01, le=10_000, description="Frame rate; None: as fast as possible.")
    frames: int | None = Field(default=None, ge=1, description="Stop after this many frames.")
    pattern: Literal["digits", "bars", "noise"] = Field(default="digits", description="What to draw.")


class SensorCsvSource(_SourceBase):
    """Numeric sensor rows from a CSV file or a line stream (stdin, FIFO)."""

    type: Literal["sensor_csv"] = Field(default="sensor_csv", description="Discriminator selecting this kind.")
    path: Path = Field(description="CSV file, FIFO, or '-' for stdin.")
    window: int = Field(default=28, ge=1, description="Rows per inference window.")
    stride: int = Field(default=28, ge=1, description="Rows between windows.")


class SensorMqttSource(_SourceBase):
    """Numeric sensor readings arriving on an MQTT topic."""

    type: Literal["sensor_mqtt"] = Field(default="sensor_mqtt", description="Discriminator selecting this kind.")
    topic: str = Field(description="Topic carrying JSON arrays of numbers.")
    window: int = Field(default=28, ge=1, description="Readings per inference window.")
    stride: int = Field(default=28, ge=1, description="Readings between windows.")


SourceConfig = Annotated[
    VideoFileSource | CameraSource | StreamSource | ImageDirSource | SyntheticSource | SensorCsvSource
    | SensorMqttSource,
    Field(discriminator="type"),
]


class StreamConfig(_Section):
    """One named stream of a multi-stream agent (`streams:`): its source and how its frames queue for inference."""

    name: str = Field(description="Stream name, carried by its results, events and figures (letters, digits, _ -).")
    source: SourceConfig = Field(description="The stream's source, as `source:` takes it.")
    max_fps: float | None = Field(default=None, ge=0.01, le=10_000, description="Cap the stream's capture rate.")
    stale_ms: float | None = Field(
        default=500.0, ge=1, le=3_600_000,
        description="Drop (and count) a frame that waited longer than this before inference; None: never.",
    )
    policy: Literal["latest", "fifo"] = Field(
        default="latest", description="'latest': a new frame replaces the oldest waiting one (counted as skipped); "
        "'fifo': capture waits for room, so every fresh frame is inferred.",
    )
    ring_size: int = Field(default=2, ge=1, le=1024, description="Frames waiting for inference at most.")
    stall_s: float = Field(
        default=5.0, ge=0.1, le=3600, description="A stream that delivers nothing this long is reconnected."
    )
    zones: dict[str, ZoneConfig] | None = Field(
        default=None, max_length=64,
        description="This camera's zones for a detector, in its frame pixels, instead of `detection.zones`; None: "
        "the agent-wide zones.",
    )
    detection: DetectionConfig | None = Field(
        default=None,
        description="This camera's own detection settings (filters, tracking, events) instead of `detection:`; "
        "snapshots always follow `detection.snapshots`. None: the agent-wide settings.",
    )
    model: str | None = Field(
        default=None,
        description="The model serving this stream: sync.model, or one of `models:` by name (a sensor model on a "
        "sensor stream beside a detector on the cameras); None: sync.model.",
    )

    _name = field_validator("name")(lambda cls, v: check_stream_name(v))
    _model = field_validator("model")(lambda cls, v: v if v is None else check_ident(v, "model name"))
    _zone_names = field_validator("zones")(
        lambda cls, v: None if v is None else {check_ident(k, "zone name"): z for k, z in v.items()}
    )


class ModelConfig(_Section):
    """A further package the device syncs and serves beside sync.model, on the streams whose `model:` names it.

    It is fetched, verified, smoke-tested and chosen a runtime like sync.model (every other sync.* setting applies),
    with its own scheduler and batches; it follows its channel's signed pointer (or its pin), never the fleet's
    desired state, which names sync.model.
    """

    name: str = Field(description="Model name as published (models/<name>/ in the store), named by streams' `model:`.")
    channel: str | None = Field(
        default=None, description="Pointer channel it follows ('stable': latest.json); None: sync.channel."
    )
    pinned_version: int | None = Field(default=None, ge=1, description="Serve this version and ignore its pointer.")

    _name = field_validator("name")(lambda cls, v: check_ident(v, "model name"))
    _channel = field_validator("channel")(lambda cls, v: v if v is None else check_ident(v, "channel name"))


class BatchingConfig(_Section):
    """How frames of several streams are batched into one inference (`streams:` only)."""

    max_size: int = Field(
        default=4, ge=1, le=64, description="Frames per batch at most (one per stream); 1: frame by frame."
    )
    wait_ms: float = Field(
        default=2.0, ge=0, le=1000,
        description="How long a batch waits for other streams' frames once one is ready; a lone stream never waits.",
    )
    budget_ms: float | None = Field(
        default=None, gt=0, le=60_000,
        description="Latency budget of one batched run, ms: each served model's batch sizes (1, 2, 4, ... up to "
        "max_size) are timed before its first batch and the largest within the budget is used; None: max_size.",
    )


class OnnxRuntimeConfig(_Section):
    """ONNX Runtime on CPU (or CUDA when its provider is present): the portable default, runs anywhere."""

    type: Literal["onnxruntime"] = Field(default="onnxruntime", description="Discriminator selecting this kind.")
    threads: int | None = Field(default=None, ge=1, le=1024, description="Intra-op threads (default: ORT's).")
    providers: list[str] | None = Field(default=None, description="Execution providers; None: best available.")
    spin: bool | None = Field(
        default=None,
        description="Idle intra-op workers spin-wait for the next run (ORT's default; lowest latency). false: they "
        "sleep, leaving the CPU to capture threads. Unset: spin when the agent serves one source, sleep when it "
        "batches several streams (measured: 1.3x the frames/s of 4 cameras on 2 cores, bench/results/streams.md).",
    )


class TensorRTConfig(_Section):
    """TensorRT engines (prebuilt or built on the device): the NVIDIA path."""

    type: Literal["tensorrt"] = Field(default="tensorrt", description="Discriminator selecting this kind.")
    workspace_mb: int = Field(default=1024, ge=64, description="Builder workspace.")
    engine_cache_dir: Path = Field(default=Path(".edge-cache/engines"), description="Device-built engines.")
    fp16: bool = Field(default=True, description="Allow FP16 kernels when building.")


class OpenVINOConfig(_Section):
    """OpenVINO (the `openvino` extra) on Intel CPUs, GPUs and NPUs, running the package's ONNX files."""

    type: Literal["openvino"] = Field(default="openvino", description="Discriminator selecting this kind.")
    device: str = Field(
        default="CPU", min_length=1, description="OpenVINO device to compile for: CPU, GPU, GPU.1, NPU, ..."
    )
    threads: int | None = Field(default=None, ge=1, le=1024, description="Inference threads (default: OpenVINO's).")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        default="LATENCY", description="OpenVINO performance hint; LATENCY suits one camera at batch 1."
    )
    streams_mode: Literal["batch", "async"] = Field(
        default="batch",
        description="How an agent serving `streams:` runs frames of several streams together: 'batch': one call on "
        "a batch axis bounded by batching.max_size; 'async': one infer request per frame, up to batching.max_size "
        "in flight on OpenVINO's THROUGHPUT streams (static batch 1). One `source:` always runs a static batch of 1.",
    )
    inference_precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        default="auto",
        description="Inference precision hint. 'auto': f32, plus every bf16/f16 hint the device supports as "
        "measured candidates when choosing by measurement; a named hint is forced (still gated on agreement).",
    )
    cache_dir: Path = Field(
        default=Path(".edge-cache/openvino"), description="Compiled-model cache, so a restart does not recompile."
    )


RuntimeName = Literal["tensorrt", "openvino", "onnxruntime"]
RUNTIME_ORDER: tuple[RuntimeName, ...] = ("tensorrt", "onnxruntime", "openvino")


class AutoBackendConfig(_Section):
    """Every installed runtime is a candidate; the fastest that passes the accuracy gates serves (the default)."""

    type: Literal["auto"] = Field(default="auto", description="Discriminator selecting this kind.")
    runtimes: list[RuntimeName] = Field(
        default_factory=lambda: list(RUNTIME_ORDER),
        min_length=1,
        description="Runtimes to consider, preferred first (order breaks ties and decides when measure is off); "
        "a runtime that is not installed or not usable here logs one line and is skipped.",
    )
    measure: bool = Field(
        default=True,
        description="Time every candidate (runtime x variant x inference precision) on the golden inputs at "
        "install and serve the fastest that passes; off: the first candidate that passes serves.",
    )
    hint_min_agreement: float = Field(
        default=0.99,
        ge=0,
        le=1,
        description="Share of golden samples whose top-1 under a bf16/f16 inference hint must equal FP32's.",
    )
    bench_runs: int = Field(default=30, ge=1, le=10_000, description="Timed runs per candidate (after warm-up).")
    bench_budget_s: float = Field(
        default=1.0, gt=0, le=600, description="Wall-time cap per candidate's timed runs, seconds."
    )
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="Inference threads for every runtime whose own section sets none."
    )
    onnxruntime: OnnxRuntimeConfig = Field(default_factory=OnnxRuntimeConfig, description="ONNX Runtime settings.")
    openvino: OpenVINOConfig = Field(default_factory=OpenVINOConfig, description="OpenVINO settings.")
    tensorrt: TensorRTConfig = Field(default_factory=TensorRTConfig, description="TensorRT settings.")


# `type: auto` measures every runtime; `type: onnxruntime|openvino|tensorrt` forces one (its variants may still be
# measured with sync.benchmark_on_install).
BackendConfig = Annotated[
    AutoBackendConfig | OnnxRuntimeConfig | OpenVINOConfig | TensorRTConfig, Field(discriminator="type")
]


class EventsConfig(_Section):
    """Which inference results become MQTT events."""

    mode: Literal["every", "change", "threshold", "sample", "off"] = Field(
        default="change", description="Every frame, on label change, above a score, every Nth frame, or none."
    )
    threshold: float = Field(default=0.5, ge=0, le=1, description="Score for mode 'threshold'.")
    sample_every: int = Field(default=30, ge=1, le=1_000_000, description="N for mode 'sample'.")
    top_k: int = Field(default=3, ge=1, le=20, description="Results per event.")


class TlsConfig(_Section):
    """MQTT over TLS."""

    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    insecure: bool = Field(default=False, description="Skip hostname verification (testing only).")


class MqttConfig(_Section):
    """Broker connection and telemetry cadence."""

    enabled: bool = Field(default=True, description="Connect to a broker at all.")
    host: str = Field(default="localhost", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker user.")
    password: SecretStr | None = Field(default=None, description="Broker password.")
    tls: TlsConfig | None = Field(default=None, description="TLS options; None: plain TCP.")
    keepalive_s: int = Field(default=20, ge=5, le=3600, description="Keepalive; the Last Will fires ~1.5x later.")
    telemetry_interval_s: float = Field(default=5.0, ge=0.1, le=3600, description="Telemetry period, seconds.")
    outbox_path: Path = Field(default=Path(".edge-cache/outbox.sqlite"), description="Store-and-forward queue.")
    outbox_max_messages: int = Field(
        default=100_000, ge=10, le=100_000_000, description="Queue bound; oldest dropped beyond."
    )
    session_expiry_s: int = Field(default=3600, ge=0, le=4_294_967_295, description="MQTT 5 session expiry interval.")
    ha_discovery: bool = Field(
        default=False, description="Publish retained Home Assistant discovery configs for every telemetry metric."
    )
    ha_discovery_prefix: str = Field(default="homeassistant", description="Home Assistant's discovery topic prefix.")
    outbox_synchronous: Literal["normal", "full"] = Field(
        default="normal", description="SQLite sync: 'normal' survives agent crashes; 'full' also power cuts (slower)."
    )
    max_inflight: int = Field(
        default=20, ge=1, le=65535, description="Queued messages awaiting PUBACK at once (capped by the broker)."
    )
    reconnect_min_s: int = Field(
        default=1, ge=1, le=300, description="First reconnect delay; doubles per failed attempt."
    )
    reconnect_max_s: int = Field(default=30, ge=1, le=3600, description="Longest reconnect delay.")
    flush_timeout_s: float = Field(
        default=5.0, ge=0, le=300, description="How long a clean stop waits to drain the outbox, seconds."
    )
    command_queue: int = Field(
        default=4, ge=1, le=1024, description="Commands waiting for the worker before 'busy' replies."
    )


class DaemonConfig(_Section):
    """Process-level behaviour."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=False, description="JSON log lines (for journald/Loki).")
    prometheus_port: int | None = Field(default=None, ge=1, le=65535, description="Serve /metrics on this port.")
    prometheus_host: str = Field(default="127.0.0.1", description="Address for /metrics.")


class RunConfig(_Section):
    """Bounded runs for tests and benchmarks."""

    max_frames: int | None = Field(default=None, ge=1, le=10**12, description="Stop after this many frames.")
    duration_s: float | None = Field(
        default=None, ge=0.1, le=10**9, description="Stop this many seconds after start (served or not)."
    )


class AgentConfig(_Section):
    """Everything `edgeferry agent` needs."""

    device: DeviceConfig = Field(default_factory=DeviceConfig, description="Identity.")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="Model sync.")
    source: SourceConfig = Field(default_factory=SyntheticSource, description="Frame or sensor source.")
    streams: list[StreamConfig] = Field(
        default_factory=list, max_length=MAX_STREAMS,
        description="Several named sources served by one agent with batched inference; empty: `source:` alone "
        "is the one stream, named 'default'.",
    )
    models: list[ModelConfig] = Field(
        default_factory=list, max_length=MAX_MODELS - 1,
        description="Further models served beside sync.model, each on the `streams:` whose `model:` names it; "
        "empty: sync.model serves every stream. A model's channel and pin change live; adding or removing one "
        "needs a restart.",
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Cross-stream batching.")
    backend: BackendConfig = Field(
        default_factory=AutoBackendConfig, description="Inference runtime: auto (measured) or one forced."
    )
    events: EventsConfig = Field(default_factory=EventsConfig, description="Result events.")
    detection: DetectionConfig = Field(
        default_factory=DetectionConfig,
        description="Detection models: object filters, masks, zones, tracking, object events and snapshots.",
    )
    sensor: SensorConfig = Field(
        default_factory=SensorConfig, description="Sensor models: anomaly alert rule and checks on incoming rows."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker and telemetry.")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="Logging and metrics endpoint.")
    run: RunConfig = Field(default_factory=RunConfig, description="Bounded runs.")

    @field_validator("streams")
    @classmethod
    def _unique_stream_names(cls, v: list[StreamConfig]) -> list[StreamConfig]:
        check_unique_streams([s.name for s in v])
        if any(s.name == DEFAULT_STREAM for s in v):  # the single `source:`'s figures, zones and HA ids use it
            raise ValueError(f"stream name {DEFAULT_STREAM!r} is the single source's; name the stream after its camera")
        return v

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> AgentConfig:
        if self.streams and "source" in self.model_fields_set:
            raise ValueError("set either `source:` (one stream) or `streams:` (several), not both")
        return self

    @model_validator(mode="after")
    def _every_model_serves_streams(self) -> AgentConfig:
        check_served_models(self.sync.model, [m.name for m in self.models], {s.name: s.model for s in self.streams})
        return self
