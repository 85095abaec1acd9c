"""Every telemetry metric declared once: MQTT keys, Prometheus names and units, Home Assistant and Grafana views.

MQTT telemetry keeps the units devices report (`e2e_ms_p95`, `rss_mb`); Prometheus gets base units (seconds,
bytes, ratio, celsius) through the conversion declared per unit in `UNITS`. Per-stage latency is also a
Prometheus histogram (`HISTOGRAMS`), so fleet-wide quantiles can be computed across devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shared import score_bins

Kind = Literal["gauge", "counter"]
# What a device may send for a figure: "int" takes whole numbers only (a float like 12.0 is whole; agents send
# every figure as a float), "float" any finite number.
ValueType = Literal["int", "float"]
INT64_MAX = 2**63 - 1

STAGES = ("capture_wait", "preprocess", "infer", "postprocess", "publish", "e2e")
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Unit:
    """How one telemetry unit reads in MQTT (as reported) and in Prometheus (base unit, by `factor`)."""

    symbol: str
    # How telemetry keys spell the unit (`ms` in `e2e_ms_p95`); dropped from Prometheus names.
    key_token: str | None = None
    # Prometheus base-unit suffix; None for plain counts.
    base: str | None = None
    factor: float = 1.0
    # Grafana's unit id for the Prometheus (base-unit) value.
    grafana: str = "short"
    # Range a figure in this unit may take unless its row says otherwise (ingest refuses what is outside).
    low: float = 0.0
    high: float = float(INT64_MAX)


UNITS: dict[str, Unit] = {
    u.symbol: u
    for u in (
        # A day is far beyond any per-frame stage or swap pause; a figure above it is a broken or lying clock.
        Unit("ms", "ms", "seconds", 1e-3, "s", high=86_400_000.0),
        # A century of uptime.
        Unit("s", "s", "seconds", 1.0, "s", high=3.2e9),
        # 1 PiB.
        Unit("MiB", "mb", "bytes", float(1 << 20), "bytes", high=float(1 << 30)),
        Unit("%", "pct", "ratio", 0.01, "percentunit", high=100.0),
        Unit("°C", "c", "celsius", 1.0, "celsius", low=-273.15, high=1000.0),
        Unit("frames/s", grafana="suffix: fps", high=1e6),
        Unit(""),
        Unit("frames"),
        Unit("swaps"),
        Unit("errors"),
        Unit("commands"),
        Unit("packages"),
        Unit("messages"),
        Unit("windows/s", grafana="suffix: windows/s", high=1e6),
        Unit("windows"),
        Unit("alerts"),
    )
}


@dataclass(frozen=True)
class Metric:
    """One telemetry figure."""

    name: str
    unit: str
    description: str
    kind: Kind = "gauge"
    # Home Assistant device_class / state_class hints for discovery.
    ha_device_class: str | None = None
    # Short name for Home Assistant entities and dashboard panels.
    title: str = ""
    # Why a healthy agent may never report it (no GPU, no thermal zone); None: every running agent does.
    absent_when: str | None = None
    # Value type and range a device may send; None: counters are "int", gauges "float"; bounds from the unit.
    value_type: ValueType | None = None
    low: float | None = None
    high: float | None = None

    @property
    def number_type(self) -> ValueType:
        """Whole numbers (counters, counts) or any finite number."""
        return self.value_type or ("int" if self.kind == "counter" else "float")

    @property
    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) value a device may report; counters are never negative."""
        unit = self.unit_info
        return (self.low if self.low is not None else unit.low, self.high if self.high is not None else unit.high)

    def check(self, value: object) -> float:
        """The value as a float when it has the declared type and range; ValueError naming the figure otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} must be a number, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{self.name} must be finite, not {value}")
        low, high = self.bounds
        if not low <= value <= high or (isinstance(value, int) and not -(2**63) <= value <= INT64_MAX):
            shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
            raise ValueError(f"{self.name} is {shown}, outside {low:g}..{high:g}")
        if self.number_type == "int" and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{self.name} must be a whole number, not {value}")
        return float(value)

    @property
    def unit_info(self) -> Unit:
        """The unit's conversions (KeyError for a unit UNITS does not declare)."""
        return UNITS[self.unit]

    @property
    def prometheus_name(self) -> str:
        """edgeferry_<name without unit token>[_<base unit>][_total], following Prometheus naming conventions."""
        unit = self.unit_info
        stem = "_".join(part for part in self.name.split("_") if part != unit.key_token)
        base = f"edgeferry_{stem}_{unit.base}" if unit.base else f"edgeferry_{stem}"
        return f"{base}_total" if self.kind == "counter" else base

    @property
    def prometheus_factor(self) -> float:
        """Multiply the MQTT value by this to get the Prometheus (base-unit) value."""
        return self.unit_info.factor

    @property
    def label(self) -> str:
        """The title, or a readable form of the name where a row declares none."""
        return self.title or self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram the agent exports beside the flat figures (never sent over MQTT)."""

    name: str
    unit: str
    title: str
    description: str
    label: str
    buckets: tuple[float, ...]

    @property
    def prometheus_name(self) -> str:
        """edgeferry_<name>_<base unit>; samples are <name>_bucket, _sum and _count."""
        base = UNITS[self.unit].base
        return f"edgeferry_{self.name}_{base}" if base else f"edgeferry_{self.name}"


# Upper bounds in seconds, from 0.1 ms (a tiny CPU model) to 2.5 s (a stalled camera); +Inf is implied.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

STAGE_LATENCY = Histogram(
    "stage_latency", "s", "Stage latency", "Per-frame time of each pipeline stage since boot", "stage",
    LATENCY_BUCKETS_S,
)
HISTOGRAMS: tuple[Histogram, ...] = (STAGE_LATENCY,)

STAGE_TITLES = {
    "capture_wait": "Capture wait",
    "preprocess": "Preprocess",
    "infer": "Inference",
    "postprocess": "Postprocess",
    "publish": "Publish",
    "e2e": "End-to-end",
}


def _stage_metrics() -> list[Metric]:
    out = []
    for stage in STAGES:
        for p in PERCENTILES:
            out.append(
                Metric(
                    f"{stage}_ms_p{p}",
                    "ms",
                    f"{p}th percentile of per-frame {stage.replace('_', ' ')} time over the agent's last frames",
                    ha_device_class="duration",
                    title=f"{STAGE_TITLES[stage]} p{p}",
                )
            )
    return out


# Reconstruction-error scores are normalized squared errors; a bound keeps sums and charts finite.
MAX_ANOMALY_SCORE = 1e12
_NOT_ANOMALY = "the served model is not an anomaly model"


def _anomaly_score_metrics() -> list[Metric]:
    return [
        Metric(f"anomaly_score_p{p}", "", f"{p}th percentile of the window anomaly score over this telemetry window",
               title=f"Anomaly score p{p}", absent_when=f"{_NOT_ANOMALY} or scored no window",
               high=MAX_ANOMALY_SCORE)
        for p in PERCENTILES
    ] + [
        Metric(name, "windows", f"Windows in this telemetry window scoring {score_bins.span(i)} the threshold (the "
               "score distribution rollout gates compare)", title=f"Score bin {score_bins.span(i)}",
               absent_when=f"{_NOT_ANOMALY} or scored no window", value_type="int")
        for i, name in enumerate(score_bins.NAMES)
    ]


METRICS: tuple[Metric, ...] = (
    Metric("fps", "frames/s", "Frames inferred per second over the report window", title="Frame rate"),
    Metric("frames", "frames", "Frames inferred since boot", "counter", title="Frames inferred"),
    Metric("drops", "frames", "Frames dropped by the capture queue since boot (policy 'latest')", "counter",
           title="Frames dropped"),
    Metric("queue_depth", "frames", "Frames waiting in the capture queue at report time", title="Capture queue",
           value_type="int"),
    Metric("inline_share", "", "Share of frames since the source opened that ran to completion on the capture "
           "thread (an idle, paced stream); the rest were queued for the frame thread (a backlog)",
           title="Run to completion share", absent_when="no frame captured yet, or the agent serves several streams",
           high=1.0),
    *_stage_metrics(),
    Metric("model_version", "", "Version of the model being served (0 when none)", title="Model version",
           value_type="int"),
    Metric("swaps", "swaps", "Model hot-swaps since boot", "counter", title="Model swaps"),
    Metric("swap_pause_ms", "ms", "Longest gap between two frames around the last swap", title="Swap pause",
           ha_device_class="duration", absent_when="no model swap happened since boot"),
    # Percent of one core: a multi-core agent goes over 100 (up to 1,024 cores).
    Metric("cpu_pct", "%", "Agent process CPU use, percent of one core", title="CPU", high=102_400.0),
    Metric("rss_mb", "MiB", "Agent resident memory", ha_device_class="data_size", title="Memory"),
    Metric("temp_c", "°C", "Hottest thermal zone (NaN-free: omitted when unknown)", ha_device_class="temperature",
           title="Temperature", absent_when="the host exposes no thermal zone"),
    Metric("gpu_pct", "%", "GPU utilisation where the platform reports it", title="GPU",
           absent_when="the host has no GPU the agent can read"),
    Metric("gpu_mem_mb", "MiB", "GPU memory in use where the platform reports it", ha_device_class="data_size",
           title="GPU memory", absent_when="the host has no GPU the agent can read"),
    Metric("source_errors", "errors", "Capture failures and reconnects since boot", "counter",
           title="Capture errors"),
    Metric("cmd_errors", "errors", "Rejected commands (malformed, unknown, failed) since boot", "counter",
           title="Command errors"),
    Metric("cmd_refused", "commands", "Commands refused as unsigned, forged, expired, replayed or mis-addressed",
           "counter", title="Commands refused"),
    Metric("cmd_refused_unsigned", "commands", "Unsigned commands refused (device.allow_unsigned_commands off)",
           "counter", title="Unsigned commands refused"),
    Metric("cmd_refused_unknown_key", "commands", "Commands signed by a key not in device.command_keys", "counter",
           title="Commands from unknown keys"),
    Metric("cmd_refused_bad_signature", "commands", "Commands whose signature does not match their body", "counter",
           title="Commands with bad signatures"),
    Metric("cmd_refused_expired", "commands", "Commands that arrived after their expiry", "counter",
           title="Expired commands"),
    Metric("cmd_refused_not_yet_valid", "commands", "Commands issued in the future or valid for too long", "counter",
           title="Commands not yet valid"),
    Metric("cmd_refused_replayed", "commands", "Commands whose sequence was not above the last accepted", "counter",
           title="Replayed commands"),
    Metric("cmd_refused_not_addressed", "commands", "Commands for another device, fleet, group or command name",
           "counter", title="Mis-addressed commands"),
    Metric("cmd_refused_state_corrupt", "commands", "Signed commands refused while the sequence state is corrupt",
           "counter", title="Commands refused: state corrupt"),
    Metric("package_rejects", "packages", "Model packages refused (hash, signature, names, smoke test)", "counter",
           title="Packages refused"),
    Metric("store_errors", "errors", "Package fetches that failed on the store or disk, retried with backoff",
           "counter", title="Store errors"),
    Metric("pointer_rejects", "errors", "latest.json refused: unsigned, untrusted key, bad signature or malformed",
           "counter", title="Pointers refused"),
    Metric("pointer_rollbacks", "errors", "latest.json seen moving below a version this device served or saw",
           "counter", title="Pointer rollbacks"),
    Metric("pointer_expired", "", "1 while the store's latest.json is past its expiry (a stale or frozen store)",
           title="Pointer expired", value_type="int", high=1.0),
    Metric("choice_record_rejects", "errors", "Recorded runtime choices (edgeferry bench --target) refused: bad or "
           "untrusted signature, malformed, or for another package; the device measured itself", "counter",
           title="Recorded choices refused"),
    Metric("outbox_depth", "messages", "Messages waiting in the store-and-forward queue", title="Outbox depth",
           value_type="int"),
    Metric("outbox_dropped", "messages", "Messages dropped from a full store-and-forward queue", "counter",
           title="Outbox dropped"),
    Metric("outbox_write_errors", "messages", "Messages lost because the outbox could not write them (disk full)",
           "counter", title="Outbox write errors"),
    Metric("outbox_snapshots_dropped", "messages", "Object snapshots dropped, oldest first, beyond their own "
           "outbox budget (detection.snapshots.outbox_max_*) while the broker was away", "counter",
           title="Snapshots dropped"),
    Metric("uptime_s", "s", "Seconds since the agent started", ha_device_class="duration", title="Uptime"),
    Metric("thread_errors", "errors", "Failures of background threads, each logged, backed off and retried", "counter",
           title="Thread errors"),
    # Model quality over the telemetry window (the rollout quality gates read these; class_counts rides beside).
    Metric("results_window", "frames", "Results counted in this telemetry window", title="Results in window",
           value_type="int"),
    Metric("conf_mean", "", "Mean top-1 score of the results in this telemetry window", title="Mean confidence",
           absent_when="no result in the window", high=1.0),
    Metric("low_conf_share", "", "Share of this window's results whose top-1 score is below 0.5",
           title="Low-confidence share", absent_when="no result in the window", high=1.0),
    Metric("shadow_agreement", "", "Agreement of the served model with the previous version on shadow-checked frames: "
           "share of equal top-1 (classification) or box F1 at IoU 0.5 against the previous version's (detection)",
           title="Shadow agreement", absent_when="no shadow check runs (sync.shadow_every)", high=1.0),
    Metric("shadow_frames", "frames", "Frames also run on the previous version in this telemetry window",
           title="Shadow frames", absent_when="no shadow check runs (sync.shadow_every)", value_type="int"),
    Metric("shadow_score_diff", "", "Mean |score difference| between the served anomaly model and the previous version "
           "on shadow-checked windows, in units of the previous version's threshold", title="Shadow score difference",
           absent_when="no shadow check runs on an anomaly model (sync.shadow_every)", high=MAX_ANOMALY_SCORE),
    # Detection quality over the telemetry window (a detector's gates; class_counts and zone_counts ride beside).
    Metric("det_frames_window", "frames", "Frames a detector served in this telemetry window",
           title="Detector frames in window", absent_when="the served model is not a detector", value_type="int"),
    Metric("det_objects_per_frame", "", "Detections per frame (before object filters) in this telemetry window",
           title="Objects per frame", absent_when="the served model is not a detector", high=10_000.0),
    Metric("det_score_mean", "", "Mean score of this window's detections (before object filters)",
           title="Mean detection score", absent_when="the served model is not a detector or saw nothing",
           high=1.0),
    # Sensor models (anomaly scoring over sensor windows): the score with its threshold, alerts and the window rate.
    *_anomaly_score_metrics(),
    Metric("anomaly_threshold", "", "Threshold the device compares window scores with (config, variant or head)",
           title="Anomaly threshold", absent_when=_NOT_ANOMALY, high=MAX_ANOMALY_SCORE),
    Metric("anomaly_windows_over", "windows", "Windows over the threshold in this telemetry window",
           title="Windows over threshold", absent_when=_NOT_ANOMALY, value_type="int"),
    Metric("anomaly_alert_rate", "", "Windows over the threshold per 1,000 windows scored in this telemetry window "
           "(the alert rule's input; rollout gates compare it)", title="Over threshold per 1,000",
           absent_when=f"{_NOT_ANOMALY} or scored no window", high=1000.0),
    Metric("anomaly_alerts", "alerts", "Anomaly alerts fired (k of the last n windows over the threshold) since boot",
           "counter", title="Anomaly alerts", absent_when=_NOT_ANOMALY),
    Metric("anomaly_alerts_active", "alerts", "Anomaly alerts open now", title="Open anomaly alerts",
           absent_when=_NOT_ANOMALY, value_type="int", high=1_000_000.0),
    Metric("sensor_window_rate", "windows/s", "Sensor windows scored per second over the report window",
           title="Sensor window rate", absent_when="the source is not a sensor"),
    Metric("sensor_input_refused", "errors", "Malformed sensor rows, messages and windows refused since boot "
           "(wrong width, non-numeric, NaN, timestamps, gaps, wrong rate; by kind in the log)", "counter",
           title="Sensor input refused", absent_when="the source is not a sensor"),
    Metric("telemetry_figures_dropped", "", "Figures left out of telemetry because they failed their declared "
           "type or range (each name logged once)", "counter", title="Telemetry figures dropped",
           absent_when="no figure ever failed its check"),
    Metric("desired_version", "", "Model version the signed desired state asks for (0 when none)",
           title="Desired version", value_type="int"),
    Metric("desired_applied", "messages", "Signed desired states applied since boot", "counter",
           title="Desired states applied"),
    Metric("desired_refused", "messages", "Desired states refused: unsigned, forged, replayed or mis-addressed",
           "counter", title="Desired states refused"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def check_figure(name: str, value: object) -> float:
    """A declared figure's value as a float; ValueError when the name is undeclared or the value out of range."""
    metric = BY_NAME.get(name)
    if metric is None:
        raise ValueError(f"{name!r} is not a figure declared in shared/metrics.py")
    return metric.check(value)


def unknown_metrics(values: dict[str, float]) -> list[str]:
    """Names in a telemetry dict that the table does not declare."""
    return sorted(k for k in values if k not in BY_NAME)
