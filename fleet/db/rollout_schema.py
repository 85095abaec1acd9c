"""Rollout tables on the fleet's one `metadata`: rollouts, the one active rollout per group, devices, audit log.

Every decision of the controller is one transaction over these rows. `rollout_devices.want_serial` /
`sent_serial` are an outbox: a transition records the desired state each device should get, and the sender marks
it sent afterwards, so a crash in between resends the same declarative state instead of skipping it.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from fleet.db.schema import metadata

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("fleet", String(64), nullable=False),
    Column("group_name", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("plan", JSON, nullable=False),
    # running, paused, completed, failed (rolled back by a gate or deadline), aborted (by the operator)
    Column("state", String(16), nullable=False),
    Column("stage_index", Integer, nullable=False),
    Column("stage_started_ms", BigInteger, nullable=False),
    Column("deadline_ms", BigInteger, nullable=False),
    Column("next_analysis_ms", BigInteger, nullable=False),
    Column("last_decision", String(16)),
    Column("last_reason", Text, nullable=False, default=""),
    Column("last_gates", JSON, nullable=False, default=list),
    Column("baseline", JSON, nullable=False, default=dict),
    # The group's desired state is moved to the new version once, after the last stage passed.
    Column("group_want", Boolean, nullable=False, default=False),
    Column("group_sent", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger),
    # Optimistic concurrency: the controller and operator commands both write only the rev they read.
    Column("rev", Integer, nullable=False, default=0),
    Index("ix_rollouts_group", "fleet", "group_name", "created_ms"),
)

rollout_active = Table(
    "rollout_active",
    metadata,
    Column("fleet", String(64), primary_key=True),
    Column("group_name", String(64), primary_key=True),
    Column("rollout_id", String(64), nullable=False),
)

rollout_devices = Table(
    "rollout_devices",
    metadata,
    Column("rollout_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("stage_index", Integer, nullable=False),
    Column("assigned_ms", BigInteger, nullable=False),
    Column("prior_version", BigInteger),
    # Whether the device had a desired-state override of its own before; if not, a rollback's pin is lifted once
    # the device runs its prior version again, so later group deploys reach it.
    Column("prior_override", Boolean, nullable=False, default=False),
    Column("restarts_base", Integer, nullable=False, default=0),
    Column("converged_ms", BigInteger),
    # pending, updated, failed, rolled_back, restored (back on its prior version, pin lifted)
    Column("state", String(16), nullable=False),
    Column("fail_kind", String(16)),
    Column("reason", Text, nullable=False, default=""),
    # The desired state this device should get: "set" want_version (want_downgrade), or "clear" the override.
    Column("want_action", String(8), nullable=False),
    Column("want_version", BigInteger),
    Column("want_downgrade", Boolean, nullable=False, default=False),
    Column("want_serial", Integer, nullable=False),
    Column("sent_serial", Integer, nullable=False, default=0),
    Index("ix_rollout_devices_unsent", "rollout_id", "sent_serial"),
)

rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("rollout_id", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("stage_index", Integer, nullable=False),
    Column("actor", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("figures", JSON, nullable=False, default=dict),
    Index("ix_rollout_events_rollout", "rollout_id", "id"),
)

ROLLOUT_TABLES = (rollouts, rollout_active, rollout_devices, rollout_events)
