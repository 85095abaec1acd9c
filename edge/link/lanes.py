"""Budgets for kinds of queued messages that may not take the whole outbox (large ones such as snapshots)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import OutboxError

# The lane object snapshots queue in: JPEGs of tens of KiB each, so they get their own count and byte budget.
SNAPSHOT_LANE = "snapshots"


@dataclass(frozen=True)
class LaneBudget:
    """At most max_messages and max_bytes of payload queued in one lane; beyond, its oldest are dropped (counted)."""

    lane: str
    max_messages: int
    max_bytes: int

    def __post_init__(self) -> None:
        if not self.lane or not self.lane.isidentifier():
            raise OutboxError(f"outbox lane name {self.lane!r} must be a plain identifier")
        if self.max_messages < 1 or self.max_bytes < 1:
            raise OutboxError(f"outbox lane {self.lane}: budget must allow at least 1 message and 1 byte, got "
                              f"{self.max_messages} messages and {self.max_bytes} bytes")
