"""The fleet database schema: one `metadata` every table of the control plane belongs to (rollout tables too).

Times are Unix milliseconds (BigInteger), JSON columns hold what devices reported after ingest validated it
(rows written by older versions may hold anything: readers sanitise, fleet.db.sanitize). Every table is keyed by
fleet first, so one database can hold several fleets.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

SCHEMA_VERSION = 1

meta = Table(
    "fleet_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    # Optimistic concurrency: every update names the rev it read, so two workers never lose each other's change.
    Column("rev", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False, default="unknown"),
    Column("boot_id", String(64)),
    # Device-clock time of the first message of the current boot: an older boot's late message changes nothing.
    Column("boot_ts_ms", BigInteger),
    Column("restarts", Integer, nullable=False, default=0),
    Column("first_seen_ms", BigInteger),
    Column("last_seen_ms", BigInteger),
    Column("status_ms", BigInteger),
    Column("state_ts_ms", BigInteger),
    Column("agent_version", String(64)),
    Column("model_name", String(64)),
    Column("model_version", BigInteger),
    Column("model_variant", String(128)),
    Column("model_backend", String(64)),
    Column("hardware", JSON, nullable=False, default=dict),
    Column("config_digest", String(128)),
    Column("unsigned_commands", Boolean, nullable=False, default=False),
    Column("degraded", JSON, nullable=False, default=dict),
    Column("reported_groups", JSON, nullable=False, default=list),
    Column("telemetry_interval_s", Float),
    Column("last_telemetry_ms", BigInteger),
    # Ingest refusals and sheds booked against the device (added after schema 1: fleet.db.migrate adds them).
    Column("refused", BigInteger, nullable=False, default=0, server_default="0"),
    Column("last_refused", String(256)),
    Column("last_refused_ms", BigInteger),
    Column("shed", BigInteger, nullable=False, default=0, server_default="0"),
    # What moves the device to a new version ('latest' or 'desired') and the pointer channel it follows, from its
    # state payload (added after schema 1; None: not reported, an older agent).
    Column("follow", String(16)),
    Column("channel", String(64)),
    # Further models the device serves beside model_name (fleet.registry.MODEL_FIELDS of each), from its state
    # payload (added after schema 1; NULL in an older row reads as none).
    Column("models", JSON),
    # The main model's precision and the streams it serves (empty: every stream), from its state payload (added
    # after schema 1; NULL in an older row reads as not known / none).
    Column("model_precision", String(64)),
    Column("model_streams", JSON),
)

# Removed devices (issue 19 follow-up): ingest ignores their retained messages, which the fleet's broker user may
# not clear, until a live message from the device lifts the tombstone.
device_tombstones = Table(
    "device_tombstones",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("removed_ms", BigInteger, nullable=False),
)

group_assignments = Table(
    "group_assignments",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("group_name", String(64), primary_key=True),
    Column("assigned_ms", BigInteger, nullable=False),
)

telemetry_samples = Table(
    "telemetry_samples",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("fleet", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("figures", JSON, nullable=False),
    Column("class_counts", JSON, nullable=False, default=dict),
    Index("ix_samples_device_ts", "fleet", "device_id", "ts_ms"),
    Index("ix_samples_ts", "ts_ms"),
    # Retention and history go by the fleet's receive time, never the device's clock.
    Index("ix_samples_received", "fleet", "received_ms"),
)

telemetry_history = Table(
    "telemetry_history",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("bucket_ms", BigInteger, primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("figures", JSON, nullable=False),
    Index("ix_history_bucket", "bucket_ms"),
)

# A multi-stream agent's latest per-stream figures (fleet.db.streams), apart from the device record so the
# registry's hot write path stays as it is.
device_streams = Table(
    "device_streams",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("streams", JSON, nullable=False, default=dict),
    # Streams of the last report beyond fleet.db.streams.MAX_STREAMS_PER_DEVICE, left out.
    Column("dropped", BigInteger, nullable=False, default=0),
)

desired = Table(
    "desired",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("scope", String(8), primary_key=True),  # "group" or "device"
    Column("name", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    # 0 when the entry names a channel instead (the column predates channels and stays NOT NULL in old databases).
    Column("version", BigInteger, nullable=False),
    Column("allow_downgrade", Boolean, nullable=False, default=False),
    Column("rollout_id", String(64)),
    Column("previous_version", BigInteger),
    Column("set_ms", BigInteger, nullable=False),
    Column("channel", String(64)),
)

desired_published = Table(
    "desired_published",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("allow_downgrade", Boolean, nullable=False),
    Column("rollout_id", String(64)),
    Column("seq", BigInteger, nullable=False),
    Column("published_ms", BigInteger, nullable=False),
    Column("channel", String(64)),
)

issuer_seq = Table(
    "issuer_seq",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

commands = Table(
    "commands",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("fleet", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("name", String(32), nullable=False),
    Column("args", JSON, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sent_ms", BigInteger, nullable=False),
    Column("reply_ok", Boolean),
    Column("reply_error", Text),
    Column("reply_ms", BigInteger),
    Index("ix_commands_device", "fleet", "device_id", "sent_ms"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("acquired_ms", BigInteger, nullable=False),
)
