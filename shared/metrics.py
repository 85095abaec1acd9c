"""Every telemetry metric declared once: payload keys, Prometheus names and dashboard views derive from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter"]

STAGES = ("capture_wait", "preprocess", "infer", "postprocess", "publish", "e2e")
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Metric:
    """One telemetry figure."""

    name: str
    unit: str
    description: str
    kind: Kind = "gauge"
    # Home Assistant device_class / state_class hints for discovery.
    ha_device_class: str | None = None

    @property
    def prometheus_name(self) -> str:
        """edgeferry_<name>[_<unit suffix>] following Prometheus naming conventions."""
        base = f"edgeferry_{self.name}"
        return f"{base}_total" if self.kind == "counter" else base


def _stage_metrics() -> list[Metric]:
    out = []
    for stage in STAGES:
        for p in PERCENTILES:
            out.append(
                Metric(
                    f"{stage}_ms_p{p}",
                    "ms",
                    f"{p}th percentile of per-frame {stage.replace('_', ' ')} time over the report window",
                    ha_device_class="duration",
                )
            )
    return out


METRICS: tuple[Metric, ...] = (
    Metric("fps", "frames/s", "Frames inferred per second over the report window"),
    Metric("frames", "frames", "Frames inferred since boot", "counter"),
    Metric("drops", "frames", "Frames dropped by the capture queue since boot (policy 'latest')", "counter"),
    Metric("queue_depth", "frames", "Frames waiting in the capture queue at report time"),
    *_stage_metrics(),
    Metric("model_version", "", "Version of the model being served (0 when none)"),
    Metric("swaps", "swaps", "Model hot-swaps since boot", "counter"),
    Metric("swap_pause_ms", "ms", "Longest gap between two frames around the last swap"),
    Metric("cpu_pct", "%", "Agent process CPU use, percent of one core"),
    Metric("rss_mb", "MiB", "Agent resident memory"),
    Metric("temp_c", "°C", "Hottest thermal zone (NaN-free: omitted when unknown)", ha_device_class="temperature"),
    Metric("gpu_pct", "%", "GPU utilisation where the platform reports it"),
    Metric("gpu_mem_mb", "MiB", "GPU memory in use where the platform reports it"),
    Metric("source_errors", "errors", "Capture failures and reconnects since boot", "counter"),
    Metric("cmd_errors", "errors", "Rejected commands (malformed, unknown, failed) since boot", "counter"),
    Metric("cmd_refused", "commands", "Commands refused as unsigned, forged, expired, replayed or mis-addressed",
           "counter"),
    Metric("cmd_refused_unsigned", "commands", "Unsigned commands refused (device.allow_unsigned_commands off)",
           "counter"),
    Metric("cmd_refused_unknown_key", "commands", "Commands signed by a key not in device.command_keys", "counter"),
    Metric("cmd_refused_bad_signature", "commands", "Commands whose signature does not match their body", "counter"),
    Metric("cmd_refused_expired", "commands", "Commands that arrived after their expiry", "counter"),
    Metric("cmd_refused_not_yet_valid", "commands", "Commands issued in the future or valid for too long", "counter"),
    Metric("cmd_refused_replayed", "commands", "Commands whose sequence was not above the last accepted", "counter"),
    Metric("cmd_refused_not_addressed", "commands", "Commands for another device, fleet, group or command name",
           "counter"),
    Metric("cmd_refused_state_corrupt", "commands", "Signed commands refused while the sequence state is corrupt",
           "counter"),
    Metric("package_rejects", "packages", "Model packages refused (hash, signature, names, smoke test)", "counter"),
    Metric("store_errors", "errors", "Package fetches that failed on the store or disk, retried with backoff",
           "counter"),
    Metric("pointer_rejects", "errors", "latest.json refused: unsigned, untrusted key, bad signature or malformed",
           "counter"),
    Metric("pointer_rollbacks", "errors", "latest.json seen moving below a version this device served or saw",
           "counter"),
    Metric("pointer_expired", "", "1 while the store's latest.json is past its expiry (a stale or frozen store)"),
    Metric("outbox_depth", "messages", "Messages waiting in the store-and-forward queue"),
    Metric("outbox_dropped", "messages", "Messages dropped from a full store-and-forward queue", "counter"),
    Metric("outbox_write_errors", "messages", "Messages lost because the outbox could not write them (disk full)",
           "counter"),
    Metric("uptime_s", "s", "Seconds since the agent started", ha_device_class="duration"),
    Metric("thread_errors", "errors", "Failures of background threads, each logged, backed off and retried", "counter"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def unknown_metrics(values: dict[str, float]) -> list[str]:
    """Names in a telemetry dict that the table does not declare."""
    return sorted(k for k in values if k not in BY_NAME)
