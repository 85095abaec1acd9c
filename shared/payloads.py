"""JSON payload schemas of the MQTT contract: envelope, state, telemetry, events, commands, replies."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import CommandError
from shared.metrics import BY_NAME
from shared.payload_limits import BoundedDict, Ident, Label, LongToken, Text, Token, UInt64, clean_text
from shared.request_id import check_request_id, text_request_id
from shared.streams import DEFAULT_STREAM, MAX_STREAM_FIGURES, MAX_STREAMS, check_stream_figures

PAYLOAD_SCHEMA_VERSION = 1
MAX_COMMAND_BYTES = 16 * 1024
MAX_GROUPS = 64
MAX_DEGRADED = 64
# Models one device may serve side by side (sync.model and its `models:`).
MAX_MODELS = 16
MAX_CLASS_COUNTS = 1024
# Zones are at most 64 per device; with per-label keys ("zone/label") a few labels each.
MAX_ZONE_COUNTS = 1024
MAX_TOP_K = 100
# measured: timed on this device; preference: the first candidate that passed; recorded: timed ahead of time on an
# identical named target, then smoke-tested and hint-gated here.
ChoiceSource = Literal["measured", "preference", "recorded"]


class Envelope(BaseModel):
    """Fields every JSON payload carries, so a reader can order, dedupe and attribute it.

    Devices are untrusted: every field of a device-sent payload is bounded (shared.payload_limits), numbers finite.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    schema_version: int = Field(default=PAYLOAD_SCHEMA_VERSION, ge=0, le=1000, description="Payload schema version.")
    device_id: Ident = Field(description="Device that sent it.")
    boot_id: Token = Field(description="Random id of this agent run; seq restarts with it.")
    seq: UInt64 = Field(description="Monotonic per boot, across all topics.")
    ts: UInt64 = Field(description="Unix time in milliseconds when produced.")
    replayed: bool = Field(default=False, description="Delivered late from the store-and-forward queue.")


class ModelInfo(BaseModel):
    """The model a device serves."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Ident | None = Field(default=None, description="Model name.")
    version: UInt64 | None = Field(default=None, description="Served version.")
    variant: LongToken | None = Field(default=None, description="Variant file.")
    precision: Token | None = Field(default=None, description="Variant precision.")
    backend: Token | None = Field(default=None, description="Inference backend in use.")
    device: Token | None = Field(default=None, description="Device the backend runs on (cpu, cuda, CPU, GPU, NPU).")
    inference_precision: Token | None = Field(
        default=None, description="Precision the runtime computes in (f32, bf16, f16), on top of the variant's."
    )
    choice_source: ChoiceSource | None = Field(
        default=None, description="How the runtime was chosen: measured here, by preference, or recorded for a target."
    )
    choice_target: Token | None = Field(
        default=None, description="Target whose recorded choice serves (edgeferry bench --target); None: this device."
    )
    streams: list[Ident] = Field(
        default_factory=list, max_length=MAX_STREAMS,
        description="Streams this model serves (`streams:` naming it); empty: every stream, or the single source.",
    )


class StatePayload(Envelope):
    """Retained description of a device."""

    agent_version: Token = Field(description="edgeferry version.")
    model: ModelInfo = Field(description="Served model.")
    hardware: BoundedDict = Field(description="CPU, GPU and platform facts.")
    config_digest: LongToken = Field(description="Digest of the resolved config.")
    unsigned_commands: bool = Field(
        default=False, description="True when this device accepts unsigned commands (development only)."
    )
    degraded: dict[Ident, Text] = Field(
        default_factory=dict, max_length=MAX_DEGRADED,
        description="Components failing now (thread, outbox, store), with the last error.",
    )
    groups: list[Ident] = Field(default_factory=list, max_length=MAX_GROUPS,
                                description="Groups from the device's config (device.groups).")
    telemetry_interval_s: float | None = Field(
        default=None, ge=0.1, le=86400,
        description="Seconds between telemetry reports; a registry calls 3 silent intervals stale.",
    )
    desired_version: UInt64 | None = Field(
        default=None, description="Version the signed desired state asks for (what it converges to); None: none."
    )
    follow: Literal["latest", "desired"] | None = Field(
        default=None,
        description="What moves the device to a new version: its channel's signed pointer ('latest') or only the "
        "fleet's desired state ('desired', a fleet-managed device); None: an agent older than the field.",
    )
    channel: Ident | None = Field(
        default=None, description="Pointer channel the device follows in 'latest' mode ('stable': latest.json)."
    )
    models: list[ModelInfo] = Field(
        default_factory=list, max_length=MAX_MODELS,
        description="Further models the device serves beside `model` (its config's `models:`), each on the streams "
        "that name it; they follow their own channel's pointer, never the fleet's desired state.",
    )


class BenchmarkCandidate(BaseModel):
    """One runtime x variant x inference precision a device considered, timed or rejected."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(description="Runtime: onnxruntime, openvino or tensorrt.")
    device: str = Field(description="Device the runtime ran it on.")
    variant: str = Field(description="Variant file.")
    precision: str = Field(description="Variant precision (fp32, int8, fp16, tensorrt).")
    inference_precision: str = Field(description="Inference precision hint (f32, bf16, f16).")
    status: Literal["chosen", "passed", "rejected"] = Field(description="Served, passed but slower, or refused.")
    p50_ms: float | None = Field(default=None, description="Median batch-1 latency on the golden inputs, ms.")
    p99_ms: float | None = Field(default=None, description="99th percentile (nearest rank) of the same runs, ms.")
    agreement: float | None = Field(
        default=None, description="Share of golden samples whose top-1 equals FP32's (the reference)."
    )
    reason: str | None = Field(default=None, description="Why it was rejected.")


class BenchmarkResult(BaseModel):
    """What a device measured to choose its runtime; cached on disk and published retained on `benchmark`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model name.")
    version: int = Field(description="Package version.")
    package_sha256: str = Field(description="sha256 of the package's manifest (names every file's hash).")
    hardware: str = Field(description="Hardware fingerprint the figures hold for.")
    runtimes: dict[str, str] = Field(description="Runtime versions the figures hold for.")
    cache_key: str = Field(description="Key of the on-disk cache entry (package, hardware, runtimes, settings).")
    measured: bool = Field(description="Candidates were timed (False: the first that passed serves).")
    cached: bool = Field(default=False, description="Read from the cache instead of measured now.")
    source: ChoiceSource = Field(
        default="measured",
        description="How the choice was made: measured on this device, by preference order, or recorded ahead of "
        "time on an identical target (edgeferry bench --target) and re-gated here without timing.",
    )
    target: str | None = Field(
        default=None, description="Named target the figures were measured on ahead of time; None: this device."
    )
    measured_at: int = Field(description="Unix time in milliseconds of the measurement.")
    chosen: BenchmarkCandidate | None = Field(default=None, description="The candidate that serves.")
    candidates: list[BenchmarkCandidate] = Field(description="Every candidate, in the order considered.")


class BenchmarkPayload(Envelope):
    """Retained result of the latest runtime choice."""

    result: BenchmarkResult = Field(description="The choice, every candidate's p50 and each rejection reason.")


class TelemetryPayload(Envelope):
    """Flat numbers; keys come from shared.metrics, each checked against its declared type and range.

    A key the metric table does not declare is dropped (a newer agent's figure is not an error; it is not stored).
    """

    model_config = ConfigDict(extra="allow")

    class_counts: dict[Label, UInt64] | None = Field(
        default=None, max_length=MAX_CLASS_COUNTS,
        description="Top-1 label -> results in this telemetry window (not a metric: keys vary).",
    )
    zone_counts: dict[Label, UInt64] | None = Field(
        default=None, max_length=MAX_ZONE_COUNTS,
        description="Objects in each detection zone now: 'zone' -> objects and 'zone/label' -> objects of that label; "
        "a named stream's keys start '<stream>:' (shared.streams.zone_key: two cameras' zones of one name are two "
        "counts) (not a metric: zone names are configuration).",
    )

    streams: dict[Ident, Annotated[dict[str, float], Field(max_length=MAX_STREAM_FIGURES)]] | None = Field(
        default=None, max_length=MAX_STREAMS,
        description="Per-stream figures of a multi-stream agent: stream name -> figures declared in "
        "shared/streams.py (undeclared ones are dropped); None: one stream, reported in the flat figures.",
    )

    @field_validator("streams")
    @classmethod
    def _declared_stream_figures(cls, v: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
        return None if v is None else {name: check_stream_figures(dict(figures)) for name, figures in v.items()}

    @model_validator(mode="after")
    def _declared_figures(self) -> TelemetryPayload:
        extra = self.__pydantic_extra__
        if extra:
            for name in [k for k in extra if k not in BY_NAME]:
                del extra[name]
            for name, value in extra.items():
                BY_NAME[name].check(value)
        return self

    def figures(self) -> dict[str, float]:
        """The declared figures this report carries (validated), as floats."""
        return {k: float(v) for k, v in (self.__pydantic_extra__ or {}).items()}

    @classmethod
    def build(
        cls,
        envelope: Envelope,
        values: dict[str, float],
        class_counts: dict[str, int] | None = None,
        zone_counts: dict[str, int] | None = None,
        streams: dict[str, dict[str, float]] | None = None,
    ) -> TelemetryPayload:
        """Telemetry from declared metrics only."""
        unknown = [k for k in values if k not in BY_NAME]
        if unknown:
            raise ValueError(f"undeclared metrics {unknown}; add them to shared/metrics.py")
        return cls(**envelope.model_dump(), **values, class_counts=class_counts, zone_counts=zone_counts,
                   streams=streams)


class Detection(BaseModel):
    """One classification result."""

    model_config = ConfigDict(allow_inf_nan=False)

    label: Label = Field(description="Top-1 label.")
    score: float = Field(ge=-1e6, le=1e6, description="Top-1 probability.")
    top_k: list[tuple[Label, Annotated[float, Field(ge=-1e6, le=1e6)]]] = Field(
        default_factory=list, max_length=MAX_TOP_K, description="Top-k (label, score)."
    )
    frame: UInt64 = Field(description="Frame index in the source.")
    model_version: UInt64 = Field(description="Model version that produced it.")


class EventPayload(Envelope):
    """Frigate-shaped event: new/update/end with before/after."""

    type: Literal["new", "update", "end", "frame"] = Field(description="Event kind.")
    stream: Ident = Field(
        default=DEFAULT_STREAM, description="Stream (camera or sensor) the results came from; 'default' for one."
    )
    before: Detection | None = Field(default=None, description="Previous result (update/end).")
    after: Detection | None = Field(default=None, description="Current result (new/update/frame).")


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Request id echoed in the reply.")
    _check_id = field_validator("id")(lambda cls, v: check_request_id(v))


class DeployCommand(_Command):
    """Fetch and serve a version now (latest when version is omitted)."""

    name: Literal["deploy"] = "deploy"
    model: Ident | None = Field(
        default=None, description="Which of the device's models: sync.model (None) or one named in its `models:`."
    )
    version: int | None = Field(default=None, ge=1, description="Version to deploy; latest if omitted.")
    pin: bool = Field(default=False, description="Stay on this version until another deploy.")
    allow_downgrade: bool = Field(
        default=False, description="Allow a version below the device's anti-rollback floor (signed deploys only)."
    )


class RollbackCommand(_Command):
    """Return to the previous installed version."""

    name: Literal["rollback"] = "rollback"
    model: Ident | None = Field(
        default=None, description="Which of the device's models: sync.model (None) or one named in its `models:`."
    )


class SetConfigCommand(_Command):
    """Change runtime settings (dotted keys), validated like the config file."""

    name: Literal["set-config"] = "set-config"
    values: dict[str, Any] = Field(description="Dotted config keys to new values.")


class PingCommand(_Command):
    """Liveness check; the reply carries the served model."""

    name: Literal["ping"] = "ping"


class BenchmarkCommand(_Command):
    """Time every runtime candidate for the served version again and serve the fastest; the cache is bypassed."""

    name: Literal["benchmark"] = "benchmark"
    model: Ident | None = Field(
        default=None, description="Which of the device's models: sync.model (None) or one named in its `models:`."
    )


Command = Annotated[
    DeployCommand | RollbackCommand | SetConfigCommand | PingCommand | BenchmarkCommand, Field(discriminator="name")
]
_COMMAND = TypeAdapter(Command)


class ReplyPayload(Envelope):
    """Answer to a command on cmd/<name>/reply."""

    id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_text)] | None = Field(
        description="Request id, or None when the request had none readable."
    )
    command: Token = Field(description="Command name.")
    ok: bool = Field(description="Whether the command succeeded.")
    error: Text | None = Field(default=None, description="Why it failed.")
    result: BoundedDict = Field(default_factory=dict, description="Command-specific result.")


def parse_command(
    name: str, payload: bytes
) -> DeployCommand | RollbackCommand | SetConfigCommand | PingCommand | BenchmarkCommand:
    """Validate an inbound command; CommandError with a one-line reason otherwise."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command payload is {len(payload)} bytes, over the {MAX_COMMAND_BYTES} limit")
    try:
        raw = json.loads(payload) if payload else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"command payload is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise CommandError("command payload is nested too deeply") from exc
    if not isinstance(raw, dict):
        raise CommandError("command payload must be a JSON object")
    if "name" in raw and raw["name"] != name:
        raise CommandError(f"payload names command {raw['name']!r} but arrived on cmd/{name}")
    raw["name"] = name
    try:
        return _COMMAND.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise CommandError(f"unknown command {name!r}") from exc
        loc = ".".join(str(p) for p in first["loc"][1:] or first["loc"])
        raise CommandError(f"bad {name} command: {loc}: {first['msg']}") from exc


def request_id_of(payload: bytes) -> str | None:
    """Best-effort request id from a payload that failed validation, for the error reply."""
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return text_request_id(raw.get("id")) if isinstance(raw, dict) else None
