"""The control plane's typed config tree (`fleet serve --config fleet.yaml`); every field is also a flag and an
EDGEFERRY_SECTION__KEY variable. The broker section is `broker`, not the agent's `mqtt`, so an agent's environment
on the same host never leaks into it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.names import check_ident
from shared.store_config import StoreConfig

DEFAULT_DATABASE_URL = "sqlite:///.fleet/fleet.sqlite"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


class BrokerConfig(_Section):
    """The MQTT broker (or cluster) the devices report to."""

    host: str = Field(default="localhost", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker user.")
    password: SecretStr | None = Field(default=None, description="Broker password.")
    tls_ca: Path | None = Field(default=None, description="CA bundle to verify the broker (enables TLS).")
    tls_cert: Path | None = Field(default=None, description="Client certificate for mutual TLS.")
    tls_key: Path | None = Field(default=None, description="Client key for mutual TLS.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive, seconds.")
    share_group: str = Field(
        default="edgeferry-fleet",
        description="MQTT 5 shared-subscription group: workers in one group split telemetry ($share/<group>/...).",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600, description="How long to wait for the broker.")

    _group = field_validator("share_group")(lambda cls, v: check_ident(v, "share group"))


class DatabaseConfig(_Section):
    """Where the registry, desired state, command sequence and leases live."""

    url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path (one process) or postgresql+psycopg://user@host/db (several).",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="Connections per worker (PostgreSQL).")


class CommandsConfig(_Section):
    """How the fleet signs what it sends devices."""

    key: Path | None = Field(
        default=None,
        description="ed25519 private key PEM (edgeferry keygen) whose public key devices list in device.command_keys.",
    )
    expires_in_s: float = Field(default=300.0, gt=0, le=3600, description="Seconds until a command expires.")


class PackagesConfig(_Section):
    """Where model packages are published, and the keys a version must verify against before it is deployed."""

    store: StoreConfig = Field(default_factory=StoreConfig, description="The model store devices sync from.")
    trusted_keys: list[Path] = Field(
        default_factory=list, description="ed25519 public keys (PEM) a package must be signed by (as on devices)."
    )
    allow_unsigned: bool = Field(default=False, description="Accept unsigned packages (development only).")


class RegistryConfig(_Section):
    """How long telemetry is kept."""

    window_s: float = Field(
        default=3600.0, ge=300, le=7 * 86400, description="Raw telemetry samples kept per device, seconds."
    )
    history_bucket_s: float = Field(default=10.0, ge=1, le=3600, description="Downsampled history resolution.")
    history_retention_s: float = Field(
        default=86400.0, ge=60, le=90 * 86400, description="Downsampled history kept, seconds."
    )
    maintenance_interval_s: float = Field(
        default=10.0, ge=0.1, le=3600, description="How often the leader downsamples and prunes, seconds."
    )
    max_unassigned_devices: int = Field(
        default=10_000, ge=0, le=10_000_000,
        description="Most devices without a group assignment made here; ids beyond it are not registered (a "
        "flood of made-up ids cannot grow the registry). Assign groups to admit more.",
    )
    expire_after_s: float | None = Field(
        default=30 * 86400.0, ge=60, le=10 * 365 * 86400,
        description="Remove devices not heard from for this long (None: keep them until removed by hand).",
    )
    tombstone_retention_s: float | None = Field(
        default=30 * 86400.0, ge=60, le=10 * 365 * 86400,
        description="Keep a removed (or expired) device's tombstone this long, seconds, so the retained status and "
        "state the broker may still hold do not register it again; pruned on the leader's maintenance tick. Past "
        "it, such a retained message registers the device again at a worker's next start (until it expires "
        "again). None: keep tombstones for good.",
    )


class IngestConfig(_Section):
    """How much device traffic a worker queues before it sheds, and how fairly (no one device fills the queue)."""

    max_queue_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024, le=1 << 40,
        description="Bytes of messages queued for the database at most; beyond it messages are shed and counted.",
    )
    device_queue_bytes: int = Field(
        default=4 * 1024 * 1024, ge=256 * 1024 + 1024, le=1 << 40,
        description="Bytes one device may have queued at most: a flood sheds that device's messages only.",
    )
    max_queue_messages: int = Field(
        default=200_000, ge=1000, le=100_000_000,
        description="Messages queued for the database at most, whatever their size; beyond it they are shed and "
        "counted (the queue's memory is more than its payload bytes).",
    )
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Messages applied per transaction at most.")


class LeaseConfig(_Section):
    """The leader lease: one worker at a time runs the rollout controller and the maintenance."""

    ttl_s: float = Field(default=15.0, ge=1, le=3600, description="A lease not renewed for this long can be taken.")
    renew_s: float = Field(default=5.0, ge=0.1, le=1200, description="How often the holder renews it.")
    worker_id: str = Field(default_factory=_default_worker_id, description="This worker's name in the lease.")

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> LeaseConfig:
        if self.renew_s >= self.ttl_s:
            raise ValueError(f"lease.renew_s ({self.renew_s}) must be below lease.ttl_s ({self.ttl_s})")
        return self


class ControllerConfig(_Section):
    """The rollout controller the leader runs."""

    interval_s: float = Field(default=10.0, ge=0.1, le=3600, description="Seconds between two controller ticks.")
    trust_device_groups: bool = Field(
        default=False,
        description="Rollouts started with this on take a device into a group's canary and control cohorts by the "
        "groups it names in its own state (device.groups); off (default): only groups assigned here "
        "('edgeferry fleet groups assign DEVICE GROUP') count, so a device cannot put itself into a rollout.",
    )


class MetricsConfig(_Section):
    """/metrics for Prometheus (fleet.metrics_export): devices, versions, rollouts, fleet and per-device figures."""

    host: str = Field(default="127.0.0.1", description="Address to serve /metrics on.")
    port: int | None = Field(default=None, ge=0, le=65535, description="Serve /metrics on this port (None: off).")
    max_device_series: int = Field(
        default=200, ge=0, le=100_000,
        description="Most devices with per-device series (rollout devices first, then by id); the rest are counted.",
    )


class FleetConfig(_Section):
    """The whole control plane config."""

    fleet: str = Field(default="default", description="Fleet name (topic level 2) this control plane manages.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="MQTT broker.")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="Storage.")
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="Command signing.")
    packages: PackagesConfig = Field(default_factory=PackagesConfig, description="Model store and package keys.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Telemetry retention.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Ingest queue bounds.")
    lease: LeaseConfig = Field(default_factory=LeaseConfig, description="Leader lease.")
    controller: ControllerConfig = Field(default_factory=ControllerConfig, description="Rollout controller.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus /metrics.")
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")

    _fleet = field_validator("fleet")(lambda cls, v: check_ident(v, "fleet"))
